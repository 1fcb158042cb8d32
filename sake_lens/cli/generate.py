"""``sake-lens generate --edits DIR "prompt"``: generate with a registry's edits applied."""

from __future__ import annotations

import argparse

from .common import add_model_args, load_from_args, markdown_table, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text with saved edits applied behind their gates")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="one or more prompts")
    p.add_argument("--edits", metavar="DIR", help="registry directory (omit: the plain model)")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--compare", action="store_true", help="also show the unedited continuation")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..steer.generation import generate

    model = load_from_args(args)
    prompts = list(args.prompts)
    n = args.max_new_tokens
    rows: list[dict[str, object]] = [{"prompt": p} for p in prompts]
    if args.compare or not args.edits:
        for row, text in zip(rows, generate(model, prompts, max_new_tokens=n)):
            row["before" if args.edits else "continuation"] = text
    if args.edits:
        from ..registry.book import EditBook

        book = EditBook.load(args.edits, model=model)
        ids = [e.id for e in book.active_edits()]
        with book.steer(model):
            texts = generate(model, prompts, max_new_tokens=n)
        routes = book.router(model).last_routes if ids else None
        for i, (row, text) in enumerate(zip(rows, texts)):
            k = int(routes[i]) if routes is not None else -1
            row["edit"] = ids[k] if k >= 0 else None
            row["continuation"] = text
    if args.json:
        print_json(rows)
        return 0
    header = list(rows[0].keys())
    print(markdown_table(header, [["-" if r[h] is None else r[h] for h in header] for r in rows]))
    return 0
