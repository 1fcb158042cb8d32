"""Entry point of the ``sake-lens`` command line.

Each subcommand lives in its own module with ``register(subparsers)``, which adds its parser
and sets ``func``; ``main`` dispatches and turns a :class:`SakeLensError` into one clean line on
stderr and exit status 2. An option value outside its range (``--n-paraphrases 100000``) is
reported the same way, while the arguments are parsed, before any model is loaded.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import SakeLensError
from .common import OptionValueError, command_of

# Modules that define subcommands, in the order they appear in --help.
_COMMAND_MODULES = (
    "info",
    "demo",
    "edit",
    "edits",
    "eval",
    "known_facts",
    "ripple_suite",
    "compare",
    "generate",
    "sweep",
    "report",
    "publish",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sake-lens",
        description="Edit facts in language models by steering activations with optimal "
        "transport (SAKE), on TransformerLens hook points.",
    )
    parser.add_argument("--version", action="version", version=f"sake-lens {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except OptionValueError as exc:  # a value out of its range: one line, like other errors
        print(f"sake-lens {command_of(argv)}: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SakeLensError as exc:
        print(f"sake-lens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
