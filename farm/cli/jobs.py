"""The commands about jobs: submit, ls, show, cancel, retry, download."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidJobError
from .group import EXIT_FAILED_JOB, Context, as_json_text, cli, pass_ctx


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
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="a file to upload with the job (repeatable); params name it by its relative path",
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
        files=list(files) or None,
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
    """Show one job (ID may be any unique prefix of 6 or more characters)."""
    farm = obj.farm()
    _show(farm.get(farm.resolve_id(job_id)), as_json)


def _job_action(action: Callable[[Any, str], Any]) -> Callable[..., None]:
    @click.argument("job_id")
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
@click.argument("job_id")
@click.option(
    "-o", "--output", "dest", type=click.Path(file_okay=False), default=".", help="directory to write into"
)
@pass_ctx
def download(obj: Context, job_id: str, dest: str) -> None:
    """Download a finished job's outputs (checksums verified; run again to resume)."""
    farm = obj.farm()
    for path in farm.download(farm.resolve_id(job_id), dest):
        click.echo(str(path))
