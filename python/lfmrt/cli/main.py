"""``lfmrt``: the command line entry point and its subcommands.

Each subcommand lives in its own module of this package and exposes two functions:

* ``register(subparsers)``: adds its parser (``subparsers.add_parser(NAME, ...)``) and sets
  ``func`` on it with ``parser.set_defaults(func=run)``;
* ``run(args) -> int``: does the work and returns the exit status.

Add a subcommand by writing such a module and listing it in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import List, Optional, Sequence

from . import batch, bench, generate, info, quantize, serve

SUBCOMMANDS: Sequence[ModuleType] = (generate, batch, quantize, bench, info, serve)


def build_parser() -> argparse.ArgumentParser:
    """The ``lfmrt`` parser with every subcommand registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="lfmrt", description="lfmrt: a fast runtime for Liquid AI's LFM2 models.")
    parser.add_argument("--version", action="version", version=f"lfmrt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs ``lfmrt`` with ``argv`` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
