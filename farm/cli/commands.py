"""The ``farm`` command line (SPEC §9). Errors are one line; exit codes 0 ok, 2 bad input,
3 not found, 4 farm unavailable (1 for a job that ended failed/canceled under ``--wait``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from ..config import FarmConfig, load_config
from ..errors import FarmError, InvalidJobError
from ..terminal import printable

EXIT_FAILED_JOB = 1


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: FarmConfig | None = None

    @property
    def config(self) -> FarmConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def farm(self) -> Any:
        from ..client import Farm

        return Farm.connect(config=self.config)


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"farm: error: {printable(message)}", err=True)
    sys.exit(code)


def as_json_text(value: Any) -> str:
    """JSON for the terminal: ASCII only, so no control character in job data reaches it raw."""
    return json.dumps(value, indent=2, ensure_ascii=True)


class FarmGroup(click.Group):
    """Turns FarmErrors into one line on stderr and the right exit code. Anything unexpected is
    one line too (``-v`` shows its traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("verbose"):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else ""
            fail(f"unexpected {type(exc).__name__}: {reason} (run with -v for details)", 1)


@click.group(cls=FarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="config file (default: $FARM_CONFIG, ./farm.toml, ~/.config/farm/farm.toml)",
)
@click.option("-v", "--verbose", is_flag=True, help="log more")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Desktop-local render farm: queues, caps, retries, workers and a terminal UI."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    ctx.obj = Context(config_path)


# -- processes ---------------------------------------------------------------------------------


@cli.command()
@click.option("--processes", "-n", type=click.IntRange(1, 256), default=None, help="worker processes")
@click.option("--name", default=None, help="worker name (a prefix when --processes > 1)")
@click.option("--burst", is_flag=True, help="quit when there is nothing left to do")
@pass_ctx
def worker(obj: Context, processes: int | None, name: str | None, burst: bool) -> None:
    """Run workers serving high, medium, low (in that order)."""
    from .. import caps
    from ..connection import connect_redis
    from ..worker.pool import FarmWorkerPool
    from ..worker.worker import FarmWorker

    config = obj.config
    url = config.redis_url()
    connection = connect_redis(url, config)
    caps.seed(connection, config)
    count = processes or config.worker.processes
    if count == 1:
        FarmWorker(connection=connection, config=config, name=name).work(burst=burst, logging_level="INFO")
    else:
        FarmWorkerPool(url, connection, config, count, name_prefix=name).start(
            burst=burst, logging_level="INFO"
        )


@cli.command()
@pass_ctx
def scheduler(obj: Context) -> None:
    """Run rq-scheduler (delayed retries) and the sweep."""
    from ..connection import connect_redis
    from ..scheduler.loop import SchedulerLoop

    loop = SchedulerLoop(connect_redis(obj.config.redis_url(), obj.config), obj.config)
    loop.install_signal_handlers()
    loop.run()


@cli.command()
@pass_ctx
def redis(obj: Context) -> None:
    """Run the embedded Redis in the foreground (for supervisor)."""
    from .embedded import EmbeddedRedis

    server = EmbeddedRedis(obj.config)
    click.echo(f"embedded Redis on {server.url}", err=True)
    server.exec_foreground()


@cli.command()
@click.option("--workers", "-n", type=click.IntRange(1, 256), default=None, help="worker processes")
@click.option("--demo", is_flag=True, help="keep a trickle of demo jobs flowing")
@click.option("--no-tui", is_flag=True, help="run headless (Ctrl-C stops everything)")
@pass_ctx
def up(obj: Context, workers: int | None, demo: bool, no_tui: bool) -> None:
    """All-in-one: Redis (if none is configured), scheduler, workers, and the TUI."""
    from .up import run_up

    run_up(obj.config, workers=workers or obj.config.worker.processes, demo=demo, tui=not no_tui)


@cli.command()
@pass_ctx
def tui(obj: Context) -> None:
    """Attach the terminal UI to a running farm."""
    from .up import load_ui

    load_ui()(obj.config, None)


# -- jobs --------------------------------------------------------------------------------------


def parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidJobError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def load_params(params: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if params:
        source = params
        if params.startswith("@"):
            try:
                source = Path(params[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidJobError(f"cannot read {params[1:]}: {exc.strerror}") from None
        try:
            loaded = json.loads(source)
        except ValueError as exc:
            raise InvalidJobError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidJobError("--params must be a JSON object")
        merged.update(loaded)
    merged.update(parse_param(p) for p in pairs)
    return merged


@cli.command()
@click.argument("renderer")
@click.option("--param", "-p", "pairs", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it can be)")
@click.option("--params", default=None, help="params as a JSON object, or @file.json")
@click.option("--priority", type=click.Choice(["high", "medium", "low"]), default=None)
@click.option("--job-type", default=None)
@click.option("--name", default=None)
@click.option("--timeout", type=int, default=None, help="seconds")
@click.option("--max-retries", type=int, default=None)
@click.option("--job-id", default=None)
@click.option("--wait", is_flag=True, help="wait for the job, with a progress bar")
@pass_ctx
def submit(
    obj: Context,
    renderer: str,
    pairs: tuple[str, ...],
    params: str | None,
    priority: str | None,
    job_type: str | None,
    name: str | None,
    timeout: int | None,
    max_retries: int | None,
    job_id: str | None,
    wait: bool,
) -> None:
    """Submit a render; prints its job id."""
    values = load_params(params, pairs)
    farm = obj.farm()
    new_id = farm.submit(
        renderer,
        values,
        priority=priority,
        job_type=job_type,
        name=name,
        timeout=timeout,
        max_retries=max_retries,
        job_id=job_id,
    )
    click.echo(new_id)
    if wait:
        from .views import follow

        info = follow(farm, new_id)
        if info.status.value != "finished":
            sys.exit(EXIT_FAILED_JOB)


@cli.command(name="ls")
@click.option(
    "--status", type=click.Choice(["queued", "scheduled", "running", "finished", "failed", "canceled"])
)
@click.option("--priority", type=click.Choice(["high", "medium", "low"]))
@click.option("--renderer", default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ls(
    obj: Context, status: str | None, priority: str | None, renderer: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    from .views import job_table

    infos = obj.farm().list(status=status, priority=priority, renderer=renderer, limit=limit)
    if as_json:
        click.echo(as_json_text([i.model_dump(mode="json") for i in infos]))
    else:
        click.echo(job_table(infos))


def _show(info: Any, as_json: bool) -> None:
    from .views import job_detail

    click.echo(as_json_text(info.model_dump(mode="json")) if as_json else job_detail(info))


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(obj: Context, job_id: str, as_json: bool) -> None:
    """Show one job."""
    _show(obj.farm().get(job_id), as_json)


def _job_action(action: Callable[[Any, str], Any]) -> Callable[..., None]:
    @click.argument("job_id")
    @pass_ctx
    def command(obj: Context, job_id: str) -> None:
        info = action(obj.farm(), job_id)
        click.echo(f"{info.id} {info.status.value}")

    return command


cli.command(name="cancel", help="Cancel a queued, scheduled or running job.")(
    _job_action(lambda farm, job_id: farm.cancel(job_id))
)
cli.command(name="retry", help="Retry a failed or canceled job now.")(
    _job_action(lambda farm, job_id: farm.retry(job_id))
)


# -- farm-wide ---------------------------------------------------------------------------------


@cli.command()
@click.option("--total", type=int, default=None, help="farm-wide cap")
@click.option("--set", "sets", multiple=True, help="NAME=N per-renderer cap (NAME= removes it)")
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stats(obj: Context, as_json: bool) -> None:
    """Counts, caps, workers and throughput."""
    from .views import stats_text

    result = obj.farm().stats()
    click.echo(as_json_text(result.model_dump(mode="json")) if as_json else stats_text(result))


@cli.command()
@pass_ctx
def doctor(obj: Context) -> None:
    """Check Redis, workers, the scheduler and each renderer's tools."""
    from .doctor import run_doctor

    sys.exit(run_doctor(obj.config))


@cli.command(name="supervisor-config")
@click.option("--workers", "-n", type=click.IntRange(1, 256), default=None)
@pass_ctx
def supervisor_config(obj: Context, workers: int | None) -> None:
    """Print a supervisor config for Redis, the scheduler and workers on this host."""
    from .supervisor import render_supervisor_config

    click.echo(render_supervisor_config(obj.config, workers or obj.config.worker.processes))


def main() -> None:
    """Entry point. Usage errors are one line naming the option, not Click's usage block."""
    try:
        cli.main(prog_name="farm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "farm"
        fail(f"{where}: {exc.format_message()} (see {where} --help)", 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)


if __name__ == "__main__":
    main()
