"""`python -m farm`: the same as the `farm` command."""

from .cli.commands import main

main()
