"""``python -m farm.serve [--config PATH] [--port P]``: ``run_server`` without the CLI (tests,
benchmarks); the ``farm serve`` command is the operator's way in."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import load_config
from ..errors import FarmError
from .server import run_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m farm.serve", description=__doc__)
    parser.add_argument("--config", default=None, help="config file (else FARM_CONFIG, ./farm.toml, ...)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_server(load_config(args.config), port=args.port)
    except FarmError as exc:
        print(f"farm serve: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
