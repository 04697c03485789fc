"""``farm doctor``: is Redis reachable, are workers and the scheduler alive, can each renderer run?

Checks are collected first, then printed one line each or as JSON (``--json``); the exit code is
the same either way: 0 all good, 4 Redis down, 1 otherwise."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from redis import Redis

from .. import keys, policy
from ..config import FarmConfig
from ..connection import connect_redis, redact
from ..errors import FarmError
from ..files import transfer
from ..terminal import printable

EXIT_REDIS_DOWN = 4


@dataclass(frozen=True)
class Check:
    check: str
    status: str  # "ok", "warn" or "fail"
    detail: str


def run_checks(config: FarmConfig) -> tuple[list[Check], int]:
    """Every check, and the exit code they add up to."""
    from ..render import Registry

    url = config.redis_url()
    try:
        connection = connect_redis(url, config)
    except FarmError as exc:
        return [Check("redis", "fail", str(exc))], EXIT_REDIS_DOWN
    from ..client import Farm

    farm = Farm(connection, config, url=url)
    stats = farm.stats()
    checks = [Check("redis", "ok", redact(url))]
    published = policy.read(connection)
    if published is None:
        checks.append(
            Check("policy", "warn", "nothing published yet: submits use default rules (start farm up)")
        )
    else:
        checks.append(Check("policy", "ok", f"version {published.version}, published by {published.host}"))
    serve = transfer.serve_info(connection)
    if serve.get("url"):
        checks.append(Check("serve", "ok", str(serve["url"])))
    else:
        checks.append(Check("serve", "warn", "farm serve has not run: no file uploads or downloads"))
    checks.append(
        Check(
            "workers", "ok" if stats.workers else "warn", f"{stats.workers} alive ({stats.workers_busy} busy)"
        )
    )
    age = stats.scheduler_heartbeat_age
    checks.append(
        Check(
            "scheduler",
            "ok" if stats.scheduler_alive else "warn",
            ("alive" if stats.scheduler_alive else "not running (retries and sweeps are stopped)")
            + (f", last beat {age:.0f}s ago" if age is not None else ""),
        )
    )
    if config.notify.webhooks:
        checks.append(_webhooks(connection, config))
    registry = Registry.from_config(config)
    for name in registry.names():
        try:
            health = registry.get(name).doctor()
        except Exception as exc:  # a broken plugin must not stop the report
            checks.append(Check(name, "fail", f"{type(exc).__name__}: {exc}"))
            continue
        checks.append(Check(name, "ok" if health.ok else "warn", health.detail))
    return checks, 0 if all(c.status == "ok" for c in checks) else 1


def _webhooks(connection: Redis, config: FarmConfig) -> Check:
    """Webhooks configured: the last try's outcome, and how many deliveries wait for a retry."""
    from ..notify import outbox

    count = len(config.notify.webhooks)
    last = outbox.recent(connection, 1)
    waiting = connection.zcard(keys.NOTIFY_DUE)
    detail = f"{count} endpoint(s), {waiting} delivery(ies) waiting"
    if not last:
        return Check("webhooks", "ok", detail + "; none tried yet")
    entry = last[0]
    said = printable(f"{entry.get('event')} to {entry.get('target')}: {entry.get('outcome')}")
    ok = str(entry.get("outcome", "")).startswith("delivered")
    return Check("webhooks", "ok" if ok else "warn", f"{detail}; last: {said}")


def doctor_text(checks: list[Check]) -> str:
    labels = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    return printable(
        "\n".join(f"{labels[c.status]} {c.check:<12} {c.detail}" for c in checks), keep_newlines=True
    )


def doctor_json(checks: list[Check], code: int) -> dict[str, object]:
    return {"ok": code == 0, "exit_code": code, "checks": [asdict(c) for c in checks]}
