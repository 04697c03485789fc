"""Shell completion for the ``farm`` command (Click's: ``eval "$(_FARM_COMPLETE=bash_source farm)"``).

Renderer names come from the config's registry (entry points and plugins: no Redis needed). Job
ids come from Redis, the most recent ones in ``farm:jobs``, best effort: a short timeout, and any
failure (Redis down, a bad config) completes nothing rather than raising into the shell."""

from __future__ import annotations

import logging
from typing import Any

import click
from click.shell_completion import CompletionItem

from .. import keys
from ..config import FarmConfig, load_config

RECENT_IDS = 500  # newest job ids offered
REDIS_TIMEOUT = 0.5  # seconds: a completion must not hang the shell


def _config(ctx: click.Context) -> FarmConfig | None:
    try:
        return load_config(ctx.find_root().params.get("config_path"))
    except Exception:
        return None


def complete_renderer(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    config = _config(ctx)
    if config is None:
        return []
    try:
        from ..render import Registry

        names = Registry.from_config(config).names()
    except Exception:
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def recent_job_ids(config: FarmConfig, prefix: str = "", limit: int = RECENT_IDS) -> list[str]:
    """The newest job ids starting with ``prefix``; [] when Redis cannot be asked quickly."""
    from ..connection import connect_redis

    quick = config.model_copy(
        update={"redis": config.redis.model_copy(update={"connect_timeout": REDIS_TIMEOUT})}
    )
    logging.getLogger("redis").setLevel(logging.CRITICAL)
    try:
        connection = connect_redis(config.redis_url(), quick, check=False, socket_timeout=REDIS_TIMEOUT)
        try:
            ids = connection.zrevrange(keys.JOBS, 0, limit - 1)
        finally:
            connection.close()
    except Exception:
        return []
    from ..submit import JOB_ID_RE

    out = []
    for raw in ids:
        job_id = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if job_id.startswith(prefix) and JOB_ID_RE.fullmatch(job_id):  # nothing odd reaches the shell
            out.append(job_id)
    return out


def complete_job_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    config = _config(ctx)
    if config is None:
        return []
    return [CompletionItem(job_id) for job_id in recent_job_ids(config, incomplete)]


def job_id_argument(**kwargs: Any) -> Any:
    """``@click.argument("job_id")`` completing recent job ids."""
    return click.argument("job_id", shell_complete=complete_job_id, **kwargs)
