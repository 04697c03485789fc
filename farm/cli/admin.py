"""The farm-wide commands: caps, pause, resume, stats, doctor, workers, audit, supervisor-config,
systemd-config, token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import FarmError, InvalidJobError
from .group import Context, as_json_text, cli, deploy_options, pass_ctx, workers_option

if TYPE_CHECKING:
    from ..worker.scaling import PoolSize

# -- farm-wide ---------------------------------------------------------------------------------


@cli.command()
@click.option("--total", type=int, default=None, help="farm-wide cap")
@click.option("--set", "sets", multiple=True, help="NAME=N per-renderer cap (NAME= removes it)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_ctx
def caps(obj: Context, total: int | None, sets: tuple[str, ...], as_json: bool) -> None:
    """Show or change caps (live, farm-wide)."""
    from .views import caps_text

    renderers: dict[str, int | None] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidJobError(f"--set takes NAME=N, got {item!r}")
        try:
            renderers[name] = int(value) if value else None
        except ValueError:
            raise InvalidJobError(f"--set {name}: {value!r} is not an integer") from None
    farm = obj.farm()
    result = (
        farm.set_caps(total=total, renderers=renderers or None)
        if total is not None or renderers
        else farm.caps()
    )
    click.echo(as_json_text(result.model_dump(mode="json")) if as_json else caps_text(result))


@cli.command()
@click.argument("priority", type=click.Choice(["high", "medium", "low"]))
@pass_ctx
def pause(obj: Context, priority: str) -> None:
    """Stop starting jobs from one queue (running jobs continue)."""
    obj.farm().pause(priority)
    click.echo(f"{priority} paused")


@cli.command()
@click.argument("priority", type=click.Choice(["high", "medium", "low"]))
@pass_ctx
def resume(obj: Context, priority: str) -> None:
    """Start dispatching from a paused queue again."""
    obj.farm().resume(priority)
    click.echo(f"{priority} resumed")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_ctx
def stats(obj: Context, as_json: bool) -> None:
    """Counts, caps, workers and throughput."""
    from .views import stats_text

    result = obj.farm().stats()
    click.echo(as_json_text(result.model_dump(mode="json")) if as_json else stats_text(result))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON: ok, exit_code and every check")
@pass_ctx
def doctor(obj: Context, as_json: bool) -> None:
    """Check Redis, workers, the scheduler and each renderer's tools (exit 0 all good, 4 Redis
    down, 1 otherwise)."""
    from .doctor import doctor_json, doctor_text, run_checks

    checks, code = run_checks(obj.config)
    click.echo(as_json_text(doctor_json(checks, code)) if as_json else doctor_text(checks))
    sys.exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_ctx
def workers(obj: Context, as_json: bool) -> None:
    """List workers: name, host, pid, state, current job, last heartbeat (dead ones until RQ
    forgets them); then each worker pool's processes now and the number it is heading for."""
    from .views import pools_table, workers_table

    farm = obj.farm()
    found = farm.workers()
    pools = farm.pools()
    if as_json:
        click.echo(
            as_json_text(
                {
                    "workers": [w.model_dump(mode="json") for w in found],
                    "pools": [p.model_dump(mode="json") | {"autoscaling": p.autoscaling} for p in pools],
                }
            )
        )
        return
    click.echo(workers_table(found))
    if pools:
        click.echo("\n" + pools_table(pools))


@cli.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="how many entries")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_ctx
def audit(obj: Context, limit: int, as_json: bool) -> None:
    """The operator actions (cancel, retry, caps, pause...), newest first: who, when, what."""
    from .views import audit_table

    entries = obj.farm().audit_log(limit)
    click.echo(
        as_json_text([e.model_dump(mode="json") for e in entries]) if as_json else audit_table(entries)
    )


@cli.command(name="supervisor-config")
@workers_option()
@deploy_options("the programs")
@pass_ctx
def supervisor_config(
    obj: Context, workers: PoolSize | None, directory: Path | None, user: str | None
) -> None:
    """Print a supervisor config for Redis, farm serve, the scheduler and workers on this host
    (creates the log dir, which supervisord needs before it starts them)."""
    from ..worker.scaling import PoolSize
    from .supervisor import render_supervisor_config

    size = workers or PoolSize.from_config(obj.config.worker)
    text = render_supervisor_config(obj.config, size, directory=directory, user=user)
    click.echo(text, nl=False)


@cli.command()
@pass_ctx
def token(obj: Context) -> None:
    """Print the farm token (created on first use) for teammates and other boxes: they set it
    as $FARM_TOKEN to upload files and fetch outputs."""
    from ..files.token import read_token

    click.echo(read_token(obj.config, create=True))


@cli.command(name="systemd-config")
@workers_option()
@deploy_options("the units")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write the unit files there (e.g. /etc/systemd/system) instead of printing them",
)
@pass_ctx
def systemd_config(
    obj: Context, workers: PoolSize | None, directory: Path | None, user: str | None, output_dir: Path | None
) -> None:
    """Print (or write) systemd units for Redis, farm serve, the scheduler and workers, and
    farm.target to start and stop them together (Redis first and last)."""
    from ..worker.scaling import PoolSize
    from .supervisor import account, farm_command
    from .systemd import render_units

    config = obj.config
    farm = farm_command() + (f" --config {Path(config.source).resolve()}" if config.source else "")
    units = render_units(
        config,
        workers or PoolSize.from_config(config.worker),
        farm=farm,
        directory=(directory or Path.cwd()).resolve(),
        user=user or account()[0],
        note=f" from {Path(config.source).resolve()}" if config.source else "",
    )
    if output_dir is None:
        click.echo("\n".join(f"# ==> {name} <==\n{text}" for name, text in units.items()), nl=False)
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (output_dir / name).write_text(text)
    except OSError as exc:
        raise FarmError(f"cannot write {exc.filename}: {exc.strerror}") from None
    for name in units:
        click.echo(str(output_dir / name))
