"""``farm doctor``: is Redis reachable, are workers and the scheduler alive, can each renderer run?"""

from __future__ import annotations

import click

from .. import policy
from ..config import FarmConfig
from ..connection import connect_redis, redact
from ..errors import FarmError
from ..files import transfer


def run_doctor(config: FarmConfig) -> int:
    """Print one line per check; returns the exit code (0 all good, 4 Redis down, 1 otherwise)."""
    from ..render import Registry

    problems = 0
    url = config.redis_url()
    try:
        connection = connect_redis(url, config)
    except FarmError as exc:
        click.echo(f"FAIL redis        {exc}")
        return 4
    from ..client import Farm

    farm = Farm(connection, config, url=url)
    stats = farm.stats()
    click.echo(f"ok   redis        {redact(url)}")
    published = policy.read(connection)
    if published is None:
        problems += 1
        click.echo("WARN policy       nothing published yet: submits use default rules (start farm up)")
    else:
        click.echo(f"ok   policy       version {published.version}, published by {published.host}")
    serve = transfer.serve_info(connection)
    if serve.get("url"):
        click.echo(f"ok   serve        {serve['url']}")
    else:
        click.echo("WARN serve        farm serve has not run: no file uploads or downloads")
        problems += 1
    status = "ok  " if stats.workers else "WARN"
    problems += not stats.workers
    click.echo(f"{status} workers      {stats.workers} alive ({stats.workers_busy} busy)")
    status = "ok  " if stats.scheduler_alive else "WARN"
    problems += not stats.scheduler_alive
    age = stats.scheduler_heartbeat_age
    click.echo(
        f"{status} scheduler    "
        + ("alive" if stats.scheduler_alive else "not running (retries and sweeps are stopped)")
        + (f", last beat {age:.0f}s ago" if age is not None else "")
    )
    registry = Registry.from_config(config)
    for name in registry.names():
        try:
            health = registry.get(name).doctor()
        except Exception as exc:  # a broken plugin must not stop the report
            click.echo(f"FAIL {name:<12} {type(exc).__name__}: {exc}")
            problems += 1
            continue
        click.echo(f"{'ok  ' if health.ok else 'WARN'} {name:<12} {health.detail}")
        problems += not health.ok
    return 0 if problems == 0 else 1
