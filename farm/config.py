"""The farm's configuration: TOML loaded into pydantic models, with SPEC defaults.

Lookup order (SPEC §10): explicit path (``--config`` / ``config=``), ``$FARM_CONFIG``,
``./farm.toml``, then the user config dir (``~/.config/farm/farm.toml``). No file means defaults.
Every key is documented in ``config.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .models import Priority, Window

CONFIG_ENV = "FARM_CONFIG"
REDIS_URL_ENV = "FARM_REDIS_URL"
CONFIG_NAME = "farm.toml"

ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 - a bind address meaning "every interface"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisConfig(_Section):
    url: str = ""  # empty: the embedded Redis on a unix socket in data_dir
    bind: str = ""  # embedded only: "HOST:PORT" to also listen on TCP (needs a password)
    password_env: str = "FARM_REDIS_PASSWORD"  # env var holding the password for `bind`
    connect_timeout: float = Field(2.0, gt=0, le=30)
    appendfsync: Literal["everysec", "always"] = "everysec"  # embedded Redis: AOF fsync policy


class PathsConfig(_Section):
    data_dir: Path | None = None  # default: the user data dir (~/.local/share/farm)
    output_dir: Path | None = None  # default: <data_dir>/output
    input_roots: list[Path] = [Path(".")]  # renderers may only read below these
    log_dir: Path | None = None  # default: <data_dir>/logs


class QueuesConfig(_Section):
    job_types: dict[str, Priority] = {
        "doubt": Priority.HIGH,
        "topic_short": Priority.MEDIUM,
        "daily_ca": Priority.LOW,
    }
    default_priority: Priority = Priority.MEDIUM


class WindowConfig(_Section):
    start: str
    end: str
    multiplier: float = Field(gt=0, le=100)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day like '06:00'")
        return value

    def window(self) -> Window:
        return Window(start=self.start, end=self.end, multiplier=self.multiplier)


class CapsConfig(_Section):
    total: int = Field(10, ge=0, le=10_000)
    renderers: dict[str, int] = {"manim": 4}
    windows: list[WindowConfig] = [
        WindowConfig(start="06:00", end="09:00", multiplier=1.5),
        WindowConfig(start="20:00", end="23:00", multiplier=1.5),
    ]

    @field_validator("renderers")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cap in value.items():
            if cap < 0:
                raise ValueError(f"cap for {name!r} must be >= 0")
        return value


class RetryConfig(_Section):
    max_retries: int = Field(3, ge=0, le=50)
    base_delay: float = Field(300.0, ge=0)  # seconds before the first retry
    factor: float = Field(2.0, ge=1)
    max_delay: float = Field(3600.0, ge=0)
    jitter: float = Field(0.1, ge=0, le=1)  # +/- fraction of the delay


class TimeoutsConfig(_Section):
    default: int = Field(600, gt=0)  # seconds; renderers and jobs may override


class RetentionConfig(_Section):
    finished: int = Field(86_400, gt=0)
    failed: int = Field(7 * 86_400, gt=0)
    canceled: int = Field(7 * 86_400, gt=0)


class SchedulerConfig(_Section):
    interval: float = Field(1.0, gt=0, le=60)  # how often due retries are enqueued
    sweep_interval: float = Field(15.0, gt=0, le=3600)
    worker_timeout: float = Field(10.0, gt=0)  # heartbeat age after which a worker shows as dead
    lease_margin: float = Field(2.0, ge=0.5, le=60)  # seconds past a run's lease before it is taken over


class WorkerConfig(_Section):
    processes: int = Field(2, ge=0, le=256)  # with max_processes: the pool's minimum
    max_processes: int = Field(0, ge=0, le=256)  # 0: a fixed pool of `processes`; else it scales up to this
    idle_exit: float = Field(60.0, gt=0, le=86_400)  # seconds an idle process above the minimum lives on
    heartbeat_interval: float = Field(2.0, gt=0, le=60)
    cancel_poll: float = Field(0.25, gt=0, le=5)  # how often a busy worker checks for cancel/timeout
    shutdown_grace: float = Field(10.0, ge=0)  # SIGTERM: seconds to let a job finish before requeueing it
    lease: float = Field(5.0, ge=1, le=300)  # seconds a run's lease lasts without renewal

    @model_validator(mode="after")
    def _pool_size(self) -> WorkerConfig:
        if self.max_processes and self.max_processes < self.processes:
            raise ValueError(f"max_processes ({self.max_processes}) is below processes ({self.processes})")
        if not self.max_processes and not self.processes:
            raise ValueError("processes must be at least 1 (0 only as the minimum, with max_processes)")
        return self


class LimitsConfig(_Section):
    max_params_bytes: int = Field(64 * 1024, gt=0)
    max_name_length: int = Field(200, gt=0)
    max_output_bytes: int = Field(20 * 1024**3, gt=0)  # largest file a render's subprocess may write
    max_result_bytes: int = Field(1024**2, gt=0)  # largest result stored in Redis (and HTTP body read)
    max_upload_bytes: int = Field(1024**3, gt=0)  # input files uploaded with one job, all together
    per_submitter_per_hour: int = Field(0, ge=0)  # jobs one submitter may submit per hour; 0: no limit
    max_timeout: int = Field(7 * 86_400, gt=0)  # the largest per-job timeout a submit may ask for
    max_retries: int = Field(50, ge=0, le=1000)  # the largest per-job max_retries a submit may ask for


class ServeConfig(_Section):
    bind: str = ""  # "HOST:PORT" to serve other boxes (e.g. "0.0.0.0:8642"); empty: loopback only
    port: int = Field(8642, gt=0, lt=65536)  # with an empty bind: 127.0.0.1:<port>
    url: str = ""  # how other boxes reach farm serve; default: http://<this host's name>:<port>
    url_ttl: int = Field(86_400, gt=0, le=30 * 86_400)  # seconds a signed download URL stays valid
    token_env: str = "FARM_TOKEN"  # env var holding the farm token (else <data_dir>/token)


class CacheConfig(_Section):
    default: bool = False  # submits without cache= use this
    max_age: int = Field(86_400, gt=0)  # seconds an entry lasts (never past retention.finished)
    max_bytes: int = Field(50 * 1024**3, gt=0)  # outputs the entries may point to, all together


class WebConfig(_Section):
    bind: str = ""  # "HOST[:PORT]" for farm web to serve other boxes (the farm token required)
    port: int = Field(8643, gt=0, lt=65536)  # with an empty bind: 127.0.0.1:<port>


class AlertsConfig(_Section):
    queue_depth: int = Field(50, ge=0)
    failures_per_hour: int = Field(10, ge=0)
    avg_wait_minutes: float = Field(15.0, ge=0)


class WebhookConfig(_Section):
    url: str  # where to POST (http or https); only ever from this file, never from job data
    events: list[Literal["finished", "failed", "alert"]] = ["failed", "alert"]
    job_types: list[str] = []  # job types (submit's job_type) announced; empty: every job
    format: Literal["json", "slack"] = "json"  # slack: {"text": ...} for an incoming webhook

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value


class NotifyConfig(_Section):
    webhooks: list[WebhookConfig] = []  # one [[notify.webhooks]] table each
    timeout: float = Field(5.0, gt=0, le=60)  # seconds one delivery may take
    max_attempts: int = Field(6, ge=1, le=50)  # tries per delivery (backoff doubles between them)
    backoff: float = Field(2.0, gt=0, le=3600)  # seconds before the first retry of a delivery
    alert_check: float = Field(5.0, gt=0, le=3600)  # seconds between checks of the alert thresholds


class FarmConfig(_Section):
    redis: RedisConfig = RedisConfig()
    paths: PathsConfig = PathsConfig()
    queues: QueuesConfig = QueuesConfig()
    caps: CapsConfig = CapsConfig()
    retry: RetryConfig = RetryConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    retention: RetentionConfig = RetentionConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    worker: WorkerConfig = WorkerConfig()
    limits: LimitsConfig = LimitsConfig()
    alerts: AlertsConfig = AlertsConfig()
    notify: NotifyConfig = NotifyConfig()
    serve: ServeConfig = ServeConfig()
    web: WebConfig = WebConfig()
    cache: CacheConfig = CacheConfig()
    renderers: dict[str, dict[str, Any]] = {}  # [renderers.<name>]: that renderer's settings
    plugins: dict[str, str] = {}  # extra renderers: name = "package.module:Class"

    source: Path | None = Field(default=None, exclude=True)  # the file this was read from

    @property
    def data_dir(self) -> Path:
        base = self.paths.data_dir or Path(platformdirs.user_data_dir("farm"))
        return base.expanduser().resolve()

    @property
    def output_dir(self) -> Path:
        return (self.paths.output_dir or self.data_dir / "output").expanduser().resolve()

    @property
    def log_dir(self) -> Path:
        return (self.paths.log_dir or self.data_dir / "logs").expanduser().resolve()

    @property
    def input_roots(self) -> tuple[Path, ...]:
        return tuple(root.expanduser().resolve() for root in self.paths.input_roots)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    def redis_url(self) -> str:
        """``$FARM_REDIS_URL``, else ``redis.url``, else the embedded Redis' socket."""
        return os.environ.get(REDIS_URL_ENV) or self.redis.url or f"unix://{self.socket_path}"

    def serve_address(self) -> tuple[str, int]:
        """Where ``farm serve`` listens: ``[serve] bind``, else loopback on ``[serve] port``."""
        if self.serve.bind:
            host, _, port = self.serve.bind.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"serve.bind: expected HOST:PORT, got {self.serve.bind!r}")
            return host, int(port)
        return "127.0.0.1", self.serve.port

    def serve_url(self, port: int | None = None) -> str:
        """The URL other processes use to reach ``farm serve`` (``[serve] url`` overrides)."""
        if self.serve.url:
            return self.serve.url.rstrip("/")
        host, bound = self.serve_address()
        if host in ANY_ADDRESS:
            host = socket.gethostname()
        return f"http://{host}:{port or bound}"

    def renderer_timeout(self, renderer: str) -> int:
        value = self.renderers.get(renderer, {}).get("timeout")
        return int(value) if isinstance(value, int) and value > 0 else self.timeouts.default

    def windows(self) -> tuple[Window, ...]:
        return tuple(w.window() for w in self.caps.windows)


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, following the lookup order; None when there is none."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV} points to a missing file: {path}")
        return path
    for candidate in (Path.cwd() / CONFIG_NAME, Path(platformdirs.user_config_dir("farm")) / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> FarmConfig:
    """Read the config file (see the lookup order) into a FarmConfig."""
    found = find_config_file(path)
    if found is None:
        return FarmConfig()
    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{found}: cannot read: {exc.strerror}") from None
    config = parse_config(data, where=str(found))
    return config.model_copy(update={"source": found})


def parse_config(data: dict[str, Any], where: str = "config") -> FarmConfig:
    try:
        return FarmConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(f"{where}: {key}: {message}") from None
