"""``sake-lens info``: the model's facts and the library versions."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_model_args, load_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the model's facts and library versions")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def model_facts(model: Any) -> dict[str, Any]:
    from .._version import library_versions
    from ..model.loading import model_id
    from ..model.tokens import bos_convention

    cfg = model.cfg
    param = next(model.parameters())
    return {
        "model": model_id(model),
        "architecture": type(model).__name__,
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_ctx": cfg.n_ctx,
        "d_vocab": cfg.d_vocab,
        "device": str(param.device),
        "dtype": str(param.dtype).removeprefix("torch."),
        "prepend_bos": bos_convention(model),
        "versions": library_versions(),
    }


def run(args: argparse.Namespace) -> int:
    facts = model_facts(load_from_args(args))
    if args.json:
        print_json(facts)
    else:
        for key, value in facts.items():
            if key == "versions":
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:12s} {value}")
    return 0
