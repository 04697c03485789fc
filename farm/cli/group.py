"""The ``farm`` command group: its options, the context commands share, and one-line errors.

Errors are one line; exit codes 0 ok, 2 bad input, 3 not found, 4 farm unavailable (1 for a job
that ended failed/canceled under ``--wait``). The commands live by topic in ``processes``,
``jobs`` and ``admin``; ``commands`` puts them together and holds ``main``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from ..config import FarmConfig, load_config
from ..errors import FarmError
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


class PoolSizeType(click.ParamType):
    """``N`` (a fixed pool) or ``MIN:MAX`` (it scales between them), as a ``PoolSize``."""

    name = "N|MIN:MAX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..worker.scaling import PoolSize

        if isinstance(value, PoolSize):
            return value
        try:
            return PoolSize.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


POOL_SIZE = PoolSizeType()


def workers_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The one process-count option of every command that sizes a pool (``worker``, ``up``,
    the supervisor and systemd configs): ``--workers N`` or ``MIN:MAX`` (autoscaling), with
    ``--processes`` kept as its old name; passed as ``workers``, None for the config's default."""
    return click.option(
        "--workers",
        "--processes",
        "-n",
        "workers",
        type=POOL_SIZE,
        default=None,
        help="worker processes: N, or MIN:MAX to scale with the work that can start now "
        "(default [worker] processes, max_processes; --processes is the old name)",
    )


def deploy_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--directory`` and ``--user`` of the supervisor and systemd configs (``what``: the
    programs, the units)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--user", default=None, help=f"the user {what} run as (default: you)")(command)
        return click.option(
            "--directory",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=f"{what}' working directory (default: the current one)",
        )(command)

    return decorate


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
@click.option("-v", "--verbose", is_flag=True, help="log more, and show tracebacks of unexpected errors")
@click.version_option(None, "-V", "--version", package_name="farm", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Desktop-local render farm: queues, caps, retries, workers and a terminal UI."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    ctx.obj = Context(config_path)
