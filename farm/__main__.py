"""`python -m farm`: the same as the `farm` command."""

from .cli import main

main()
