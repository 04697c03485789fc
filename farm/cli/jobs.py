"""The commands about jobs: submit, ls, show, logs, cancel, retry, download."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidJobError
from ..terminal import printable
from .completion import complete_renderer, job_id_argument
from .group import EXIT_FAILED_JOB, Context, as_json_text, cli, pass_ctx

PRIORITIES = click.Choice(["high", "medium", "low"])
STATUSES = click.Choice(["queued", "scheduled", "running", "finished", "failed", "canceled"])


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
@click.argument("renderer", shell_complete=complete_renderer)
@click.option("--param", "-p", "pairs", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it can be)")
@click.option("--params", default=None, help="params as a JSON object, or @file.json")
@click.option(
    "--priority", type=PRIORITIES, default=None, help="queue (default: from --job-type, else medium)"
)
@click.option("--job-type", default=None, help="job type; its priority comes from [queues] in the config")
@click.option("--name", default=None, help="a name shown in listings")
@click.option(
    "--timeout", type=int, default=None, help="seconds before the render is killed (default per renderer)"
)
@click.option(
    "--max-retries", type=int, default=None, help="retries of a retryable failure (default [retry])"
)
@click.option(
    "--job-id", default=None, help="the id to use (default: generated); a resubmit with it is stored once"
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="a file to upload with the job (repeatable); params name it by its relative path",
)
@click.option(
    "--after",
    "after",
    multiple=True,
    help="a job (id or unique prefix) to wait for (repeatable); params may name its output as job:ID/NAME",
)
@click.option(
    "--cache/--no-cache",
    default=None,
    help="reuse an identical earlier render's outputs; identical jobs render once (default: [cache] default)",
)
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
    files: tuple[str, ...],
    after: tuple[str, ...],
    cache: bool | None,
    wait: bool,
) -> None:
    """Submit a render; prints its job id."""
    values = load_params(params, pairs)
    farm = obj.farm()
    waits_for = [farm.resolve_id(a) for a in after]
    new_id = farm.submit(
        renderer,
        values,
        priority=priority,
        job_type=job_type,
        name=name,
        timeout=timeout,
        max_retries=max_retries,
        job_id=job_id,
        files=list(files) or None,
        after=waits_for or None,
        cache=cache,
    )
    click.echo(new_id)
    if wait:
        from .views import follow

        info = follow(farm, new_id)
        if info.status.value != "finished":
            sys.exit(EXIT_FAILED_JOB)


@cli.command(name="ls")
@click.option("--status", type=STATUSES, help="only jobs in this status")
@click.option("--priority", type=PRIORITIES, help="only jobs of this queue")
@click.option("--renderer", default=None, shell_complete=complete_renderer, help="only jobs of this renderer")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="how many jobs")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
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


@cli.command()
@job_id_argument()
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(0, 200),
    default=10,
    show_default=True,
    help="log tail lines (0: none)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (with the log tail as 'log')")
@pass_ctx
def show(obj: Context, job_id: str, lines: int, as_json: bool) -> None:
    """Show one job and its log tail (ID may be any unique prefix of 6 or more characters)."""
    from .views import job_detail, log_section

    farm = obj.farm()
    info = farm.get(farm.resolve_id(job_id))
    tail = farm.log_tail(info.id, lines) if lines else []
    dependents = farm.dependents(info.id)
    if as_json:
        click.echo(as_json_text({**info.model_dump(mode="json"), "dependents": dependents, "log": tail}))
    else:
        click.echo(job_detail(info, dependents) + ("\n" + log_section(tail) if lines else ""))


@cli.command()
@job_id_argument()
@click.option(
    "-f", "--follow", is_flag=True, help="print new lines until the job ends (exit 1 unless it finished)"
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(1, 200),
    default=50,
    show_default=True,
    help="last lines to print first",
)
@pass_ctx
def logs(obj: Context, job_id: str, follow: bool, lines: int) -> None:
    """Print a job's log tail: the last lines its renderer logged (Redis keeps 200; the full log is
    <log_dir>/<job_id>.log on the worker that ran it)."""
    from .views import follow_log

    farm = obj.farm()
    info = farm.get(farm.resolve_id(job_id))
    if not follow:
        for line in farm.log_tail(info.id, lines):
            click.echo(printable(line))
        return
    info = follow_log(farm, info.id, lines)
    if info.status.value != "finished":
        sys.exit(EXIT_FAILED_JOB)


def _job_action(action: Callable[[Any, str], Any]) -> Callable[..., None]:
    @job_id_argument()
    @pass_ctx
    def command(obj: Context, job_id: str) -> None:
        farm = obj.farm()
        info = action(farm, farm.resolve_id(job_id))
        click.echo(f"{info.id} {info.status.value}")

    return command


cli.command(name="cancel", help="Cancel a queued, scheduled or running job.")(
    _job_action(lambda farm, job_id: farm.cancel(job_id))
)
cli.command(name="retry", help="Retry a failed or canceled job now.")(
    _job_action(lambda farm, job_id: farm.retry(job_id))
)


@cli.command()
@job_id_argument()
@click.option(
    "-o", "--output", "dest", type=click.Path(file_okay=False), default=".", help="directory to write into"
)
@pass_ctx
def download(obj: Context, job_id: str, dest: str) -> None:
    """Download a finished job's outputs (checksums verified; run again to resume)."""
    farm = obj.farm()
    for path in farm.download(farm.resolve_id(job_id), dest):
        click.echo(str(path))
