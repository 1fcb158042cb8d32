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
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

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


class UsageError(OptionValueError):
    """A command line argparse refuses (a missing or unknown option, a bad choice...)."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.message, self.prog = message, prog

    def for_command(self, command: str) -> str:
        """The message, ending with the help of the (sub)command that was meant."""
        prog = f"sake-lens {command}" if self.prog == "sake-lens" and command else self.prog
        return f"{self.message.rstrip('.')}; see `{prog} --help`."


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def one_line(message: str) -> str:
    """``message`` on one line: line breaks (and the indentation after them) become a space.

    Characters no terminal can encode (lone surrogates, e.g. from a JSON ``"\\ud800"`` in a
    data file the message quotes) are written as backslash escapes instead of failing.
    """
    text = re.sub(r"\s*\n\s*", " ", message.strip())
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        command = command_of(argv)
        known = command in _command_names(parser)
        text = (
            exc.for_command(command if known else "") if isinstance(exc, UsageError) else str(exc)
        )
        print(f"sake-lens {command}: error: {one_line(text)}", file=sys.stderr)
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
        print(f"sake-lens {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
