"""The ``farm`` command line (SPEC §9): the group (``group``) with every command registered, and
``main``, which turns usage errors into one line naming the option."""

from __future__ import annotations

import sys

import click

from . import admin, cache, jobs, processes  # noqa: F401 - importing them registers their commands
from .group import cli, fail


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
