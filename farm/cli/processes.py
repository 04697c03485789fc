"""The commands that run the farm's processes: worker, scheduler, redis, serve, up, tui, web.

Started under supervisor or systemd, every program starts at once and the embedded Redis may take
a few seconds to answer: the long-running ones wait for Redis (saying so) instead of exiting
and being restarted in a loop."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import click

from .group import Context, cli, pass_ctx, workers_option

if TYPE_CHECKING:
    from redis import Redis

    from ..worker.scaling import PoolSize

log = logging.getLogger("farm.cli")

REDIS_WAIT_NOTE_EVERY = 30.0  # seconds between "still waiting for Redis" lines
REDIS_WAIT_POLL = 0.5


def connect_when_up(obj: Context, url: str) -> Redis:
    """A client once Redis answers. A malformed URL is still an error at once."""
    from ..connection import connect_redis
    from ..errors import FarmUnavailableError

    connect_redis(url, obj.config, check=False).close()  # a bad URL raises here
    noted = -REDIS_WAIT_NOTE_EVERY
    while True:
        try:
            return connect_redis(url, obj.config)
        except FarmUnavailableError as exc:
            if time.monotonic() - noted >= REDIS_WAIT_NOTE_EVERY:
                noted = time.monotonic()
                log.warning("waiting for Redis: %s", exc)
            time.sleep(REDIS_WAIT_POLL)


# -- processes ---------------------------------------------------------------------------------


@cli.command()
@workers_option()
@click.option("--name", default=None, help="worker name (a prefix when --workers > 1)")
@click.option("--burst", is_flag=True, help="quit when there is nothing left to do")
@pass_ctx
def worker(obj: Context, workers: PoolSize | None, name: str | None, burst: bool) -> None:
    """Run workers serving high, medium, low (in that order)."""
    from .. import caps, policy
    from ..worker.pool import FarmWorkerPool
    from ..worker.scaling import PoolSize
    from ..worker.worker import FarmWorker

    url = obj.config.redis_url()
    connection = connect_when_up(obj, url)
    caps.seed(connection, obj.config)
    policy.publish(connection, obj.config, only_if_absent=True)  # the render host's wins once it runs
    config = policy.apply(obj.config, policy.read(connection), submit_side=False)
    size = workers or PoolSize.from_config(config.worker)
    if size.fixed and size.maximum == 1:
        FarmWorker(connection=connection, config=config, name=name).work(burst=burst, logging_level="INFO")
    else:
        pool = FarmWorkerPool(url, connection, config, size, name_prefix=name)
        pool.start(burst=burst, logging_level="INFO")


@cli.command()
@pass_ctx
def scheduler(obj: Context) -> None:
    """Run rq-scheduler (delayed retries) and the sweep."""
    from .. import policy
    from ..scheduler.loop import SchedulerLoop

    connection = connect_when_up(obj, obj.config.redis_url())
    policy.publish(connection, obj.config)  # the scheduler runs on the render host: its config is the farm's
    loop = SchedulerLoop(connection, obj.config)
    loop.install_signal_handlers()
    loop.run()


@cli.command()
@pass_ctx
def redis(obj: Context) -> None:
    """Run the embedded Redis in the foreground (for supervisor, systemd); on SIGTERM it waits
    for this host's workers to drain, then stops Redis."""
    import sys

    from .redis_foreground import run_foreground

    sys.exit(run_foreground(obj.config))


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default [serve] port, 8642)")
@pass_ctx
def serve(obj: Context, port: int | None) -> None:
    """Serve the farm's store over HTTP: uploaded inputs, every box's outputs, signed downloads."""
    from ..serve.server import run_server

    connect_when_up(obj, obj.config.redis_url()).close()
    run_server(obj.config, port=port)


@cli.command()
@workers_option()
@click.option("--demo", is_flag=True, help="keep a trickle of demo jobs flowing")
@click.option("--no-tui", is_flag=True, help="run headless (Ctrl-C stops everything)")
@pass_ctx
def up(obj: Context, workers: PoolSize | None, demo: bool, no_tui: bool) -> None:
    """All-in-one: Redis (if none is configured), scheduler, workers, and the TUI."""
    from ..worker.scaling import PoolSize
    from .up import run_up

    run_up(obj.config, workers=workers or PoolSize.from_config(obj.config.worker), demo=demo, tui=not no_tui)


@cli.command()
@pass_ctx
def tui(obj: Context) -> None:
    """Attach the terminal UI to a running farm."""
    from .up import load_ui

    load_ui()(obj.config, None)


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default [web] port)")
@click.option(
    "--bind", default=None, help='address to listen on, "HOST[:PORT]" (default [web] bind, else 127.0.0.1)'
)
@pass_ctx
def web(obj: Context, port: int | None, bind: str | None) -> None:
    """The terminal UI in a browser (loopback unless configured; the farm token elsewhere)."""
    from .up import load_ui

    load_ui("web")(obj.config, port, bind=bind)
