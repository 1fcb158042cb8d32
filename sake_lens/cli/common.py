"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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
