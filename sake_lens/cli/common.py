"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import SakeLensError

# Ranges of the count and size options: wide enough for any real use, small enough that a typo
# (an extra zero or two) cannot start a run of hours. ``sake-lens COMMAND --help`` shows them.
PARAPHRASES = (1, 200)
NEW_TOKENS = (1, 2048)
BATCH_SIZE = (1, 4096)
CHUNK_SIZE = (1, 1024)
RECORDS = (1, 1_000_000)
SEED = (0, 2**32 - 1)


class OptionValueError(SakeLensError):
    """A command-line option was given a value outside its documented range.

    Raised while the arguments are parsed; ``main`` prints it as one line and exits with 2.
    """


def bounded_int(flag: str, lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type=`` accepting a whole number from ``lo`` to ``hi`` for ``flag``.

    Anything else raises :class:`OptionValueError`, which argparse lets through, so the command
    line reports it on one line, before any model is loaded.

    Example:
        >>> bounded_int("--n", 1, 10)("7")
        7
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise OptionValueError(
                f"{flag} {text!r} is not a whole number; pass a number from {lo} to {hi}."
            ) from None
        if not lo <= value <= hi:
            fix = f"{flag} {hi} or less" if value > hi else f"{flag} {lo} or more"
            raise OptionValueError(
                f"{flag} {value} is out of range: it must be >= {lo} and <= {hi}; pass {fix}."
            )
        return value

    parse.__name__ = "int"
    return parse


def add_int_option(
    parser: Any,
    flag: str,
    bounds: tuple[int, int],
    *,
    default: int | None,
    help: str | None = None,
    metavar: str | None = None,
) -> None:
    """Add the whole-number option ``flag`` limited to ``bounds``; its help ends with the range.

    ``parser`` is a parser or an argument group (``add_argument`` is all that is used).
    """
    lo, hi = bounds
    text = f"{help} ({lo} to {hi})" if help else f"({lo} to {hi})"
    parser.add_argument(
        flag, type=bounded_int(flag, lo, hi), default=default, metavar=metavar, help=text
    )


def check_output_folder(flag: str, path: str) -> None:
    """Refuse, before any work, an output folder that cannot be created or written.

    Raises:
        SakeLensError: ``path`` or a folder above it is a regular file, or the nearest
            existing folder above it is not writable.
    """
    import os
    from pathlib import Path

    folder = Path(path)
    for parent in (folder, *folder.parents):
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise SakeLensError(
                f"{flag} {path!r} cannot be a folder: {str(parent)!r} is a regular file; "
                f"choose another {flag}."
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SakeLensError(
                f"{flag} {path!r}: the folder {str(parent)!r} is not writable; choose another "
                f"{flag}."
            )
        return


def command_of(argv: Sequence[str]) -> str:
    """The subcommand named in ``argv``: the first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), "")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--device`` for every command that loads a model."""
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face name or local checkpoint folder (default: the embedded "
        "SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")


def load_from_args(args: argparse.Namespace) -> Any:
    from ..model.loading import load_model

    return load_model(args.model, device=args.device)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A small markdown table; cells are stringified and newlines escaped."""

    def cell(v: Any) -> str:
        return str(v).replace("\n", "\\n").replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
