"""Running ``farm serve`` on the render host: the store's app (``app.py``) under uvicorn, where
it listens published in ``farm:serve`` (again every few seconds: Redis may restart and lose it),
the store's housekeeping every minute, and a clean stop on SIGTERM/SIGINT. ``run_server`` is what
the ``farm serve`` command and ``farm up`` call.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn
from redis import Redis
from redis.exceptions import RedisError

from .. import keys
from ..config import FarmConfig
from ..connection import connect_redis
from ..errors import ConfigError, FarmError
from ..files import store, token
from .app import create_app
from .housekeeping import clean_store

log = logging.getLogger("farm.serve")

PUBLISH_EVERY = 5.0  # seconds between publishing farm:serve again
HOUSEKEEPING_EVERY = 60.0  # seconds between passes over the store
FIRST_HOUSEKEEPING = 5.0  # seconds after the start, so a restart cleans up soon
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - names a bind to every interface, binds nothing
STOP_GRACE = 5  # seconds open transfers get to finish once asked to stop


def listen_address(config: FarmConfig, port: int | None = None) -> tuple[str, int]:
    """``[serve] bind`` ("HOST:PORT"), else 127.0.0.1:``[serve] port``; ``port`` overrides both."""
    if config.serve.bind:
        host, _, bound = config.serve.bind.rpartition(":")
        host = host.strip("[]")
        if not host or not bound.isdigit() or not 0 < int(bound) < 65536:
            raise ConfigError(f"serve.bind: expected HOST:PORT, got {config.serve.bind!r}")
        return host, int(bound) if port is None else port
    return "127.0.0.1", config.serve.port if port is None else port


def public_url(config: FarmConfig, host: str, port: int) -> str:
    """How other boxes reach this server: ``[serve] url``, else this host's name (a wildcard
    bind), the bound address (a specific one) or 127.0.0.1 (loopback)."""
    if config.serve.url:
        return config.serve.url.rstrip("/")
    if token.is_loopback(host):
        name = "127.0.0.1"
    elif host in WILDCARDS:
        name = socket.gethostname()
    else:
        name = host
    return f"http://{f'[{name}]' if ':' in name else name}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address[:2], family=family)
    except OSError as exc:
        raise FarmError(f"farm serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: ``run_server`` handles the signals, so its cleanup
    runs and the process exits normally (uvicorn would re-raise the signal after stopping)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _stop_on_signals(server: _Server) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C: stop without waiting for transfers
        server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def publish(connection: Redis, url: str, store_id: str) -> None:
    connection.hset(keys.SERVE, mapping={"url": url, "store_id": store_id, "at": repr(time.time())})


def _keep(
    connection: Redis, config: FarmConfig, url: str, store_id: str, stop: threading.Event, server: _Server
) -> None:
    """Publish farm:serve every few seconds and clean the store every minute, until stopped."""
    next_publish, next_clean = 0.0, time.monotonic() + FIRST_HOUSEKEEPING
    while not stop.is_set() and not server.should_exit:
        now = time.monotonic()
        if now >= next_publish:
            try:
                publish(connection, url, store_id)
            except (RedisError, OSError) as exc:
                log.warning("farm serve: cannot publish where it listens (retrying): %s", exc)
            next_publish = now + PUBLISH_EVERY
        if now >= next_clean:
            removed = clean_store(connection, config)
            if removed:
                log.info("store housekeeping: %d entries removed or published", removed)
            next_clean = time.monotonic() + HOUSEKEEPING_EVERY
        stop.wait(0.2)
    server.should_exit = True


def _unpublish(connection: Redis, url: str) -> None:
    with contextlib.suppress(RedisError, OSError):
        if connection.hget(keys.SERVE, "url") == url.encode():
            connection.delete(keys.SERVE)


def run_server(config: FarmConfig, port: int | None = None, *, stop: threading.Event | None = None) -> None:
    """Serve the farm's store until SIGTERM/SIGINT (or ``stop`` is set); returns once stopped.

    Listens on ``[serve] bind`` or 127.0.0.1:``[serve] port`` (``port`` overrides; 0 picks a free
    one), creates the store id and the farm token if missing, publishes ``farm:serve`` (url,
    store_id, at) and removes it when it stops. Raises FarmError when it cannot start (Redis
    unreachable: FarmUnavailableError; the address taken; a bad ``serve.bind``)."""
    host, wanted = listen_address(config, port)
    store_id = store.store_id(config, create=True) or ""
    secret = token.read_token(config, create=True)
    connection = connect_redis(config.redis_url(), config)
    sock = _listen(host, wanted)
    url = public_url(config, host, sock.getsockname()[1])
    server = _Server(
        uvicorn.Config(
            create_app(config, connection, secret),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=STOP_GRACE,
            server_header=False,
        )
    )
    stopping = stop or threading.Event()
    keeper = threading.Thread(
        target=_keep,
        args=(connection, config, url, store_id, stopping, server),
        daemon=True,
        name="serve-keeper",
    )
    try:
        with _stop_on_signals(server):
            keeper.start()
            log.info("farm serve: listening on %s:%d, reachable as %s", host, sock.getsockname()[1], url)
            server.run(sockets=[sock])
    finally:
        stopping.set()
        if keeper.is_alive():
            keeper.join(timeout=10)
        _unpublish(connection, url)
        connection.close()
        sock.close()
        log.info("farm serve: stopped")
