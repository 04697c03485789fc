"""``farm cache ls|clear``: the render cache's entries (submit's cache=True)."""

from __future__ import annotations

import click

from .group import Context, as_json_text, cli, pass_ctx


@cli.group()
def cache() -> None:
    """The render cache: identical renders done once (submit --cache)."""


@cache.command(name="ls")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="how many entries"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_ctx
def cache_ls(obj: Context, limit: int, as_json: bool) -> None:
    """Entries, newest first: key, the job whose outputs a hit reuses, size, age, hits."""
    from .views import cache_table

    found = obj.farm().cache_entries(limit)
    click.echo(as_json_text([e.model_dump(mode="json") for e in found]) if as_json else cache_table(found))


@cache.command(name="clear")
@pass_ctx
def cache_clear(obj: Context) -> None:
    """Forget every entry (the outputs stay where they are; the next identical render renders)."""
    count = obj.farm().clear_cache()
    click.echo(f"render cache cleared: {count} entr{'y' if count == 1 else 'ies'}")
