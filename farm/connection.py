"""Opening Redis connections (URL resolution, timeouts, passwords from env) and the one place
Redis errors become ``FarmUnavailableError`` (``redis_errors``), for the API, the CLI and the TUI."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from redis import Redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from .config import FarmConfig
from .errors import FarmUnavailableError

SOCKET_TIMEOUT = 10.0  # seconds a command may take (workers block on the wake list for <= 1 s)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def connect_redis(
    url: str, config: FarmConfig, *, check: bool = True, socket_timeout: float | None = None
) -> Redis:
    """A client for ``url``; with ``check`` it pings and raises FarmUnavailableError when unreachable."""
    password = os.environ.get(config.redis.password_env) if config.redis.password_env else None
    kwargs: dict[str, object] = {
        "socket_connect_timeout": config.redis.connect_timeout,
        "socket_timeout": socket_timeout or SOCKET_TIMEOUT,
        "protocol": 2,  # no HELLO round trip on every new connection (each work horse opens one)
        # redis-py's default retries 3 times with up to 10 s of backoff: too slow to say "down".
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        # No CLIENT SETINFO handshake: every work horse opens a fresh connection, and redis-py
        # would look its own version up in package metadata (~4 ms) and send two extra commands.
        "driver_info": None,
    }
    if password and "@" not in url:
        kwargs["password"] = password
    try:
        connection = Redis.from_url(url, **kwargs)
    except ValueError as exc:
        raise FarmUnavailableError(f"bad Redis URL {redact(url)!r}: {exc}") from None
    if check:
        retry = connection.get_retry()
        connection.set_retry(no_retry())  # one connect timeout at most: "unavailable" within 3 s
        try:
            ping(connection, url)
        finally:
            if retry is not None:
                connection.set_retry(retry)
    return connection


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def ping(connection: Redis, url: str = "") -> float:
    """Round-trip time in seconds; FarmUnavailableError with a one-line reason when it fails."""
    import time

    where = redact(url) if url else "Redis"
    start = time.perf_counter()
    try:
        connection.ping()
    except AuthenticationError:
        raise FarmUnavailableError(f"Redis at {where} refused the password") from None
    except ResponseError as exc:
        raise FarmUnavailableError(f"Redis at {where}: {exc}") from None
    except (RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FarmUnavailableError(f"cannot reach Redis at {where}: {reason}") from None
    return time.perf_counter() - start


def reason(exc: BaseException) -> str:
    """The first line of an error's message (or its type), for one-line reports."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


@contextlib.contextmanager
def redis_errors(what: str, *, may_have_applied: str | None = None) -> Iterator[None]:
    """Any Redis or socket error inside the block becomes one ``FarmUnavailableError`` line saying
    what failed. ``may_have_applied`` names the job of a write whose reply may have been lost:
    the message then says it may or may not have landed, and how to check."""
    try:
        yield
    except (RedisError, OSError) as exc:
        if may_have_applied is not None:
            raise FarmUnavailableError(
                f"{what} {may_have_applied}: Redis unavailable ({reason(exc)}); it may or may not have "
                f"been applied: check with `farm show {may_have_applied}`"
            ) from None
        raise FarmUnavailableError(f"{what}: Redis unavailable ({reason(exc)})") from None
