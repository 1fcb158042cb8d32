"""``sake-lens generate --edits DIR "prompt"``: generate with a registry's edits applied."""

from __future__ import annotations

import argparse

from ..errors import GateError
from .common import (
    NEW_TOKENS,
    add_int_option,
    add_model_args,
    load_from_args,
    markdown_table,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text with saved edits applied behind their gates")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="one or more prompts")
    p.add_argument("--edits", metavar="DIR", help="registry directory (omit: the plain model)")
    add_int_option(
        p, "--max-new-tokens", NEW_TOKENS, default=20, help="tokens generated per prompt"
    )
    p.add_argument("--compare", action="store_true", help="also show the unedited continuation")
    p.add_argument(
        "--explain",
        action="store_true",
        help="with --edits: show each candidate edit's gate scores, thresholds and decision",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    add_model_args(p)
    p.set_defaults(func=run)


_EXPLAIN_COLUMNS = (
    ("edit", "edit"),
    ("subject", "subject"),
    ("margin", "relation margin"),
    ("margin_threshold", "margin >"),
    ("distance", "distance"),
    ("distance_threshold", "distance <"),
    ("threshold", "threshold"),
    ("accepted", "accepted"),
    ("chosen", "chosen"),
)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _print_explanation(prompt: str, rows: list[dict[str, object]]) -> None:
    print(f"\nrouting of {prompt!r}:")
    if not rows:
        print("no edit names this prompt's subject: unedited.")
        return
    cols = [(k, h) for k, h in _EXPLAIN_COLUMNS if any(k in r for r in rows)]
    print(markdown_table([h for _, h in cols], [[_cell(r.get(k)) for k, _ in cols] for r in rows]))


def run(args: argparse.Namespace) -> int:
    from ..steer.generation import check_context, generate

    if args.explain and not args.edits:
        raise GateError("--explain shows how a registry routes a prompt; add --edits DIR.")
    model = load_from_args(args)
    prompts = list(args.prompts)
    n = args.max_new_tokens
    check_context(model, prompts, n, name="prompt", budget="--max-new-tokens")  # before any work
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
        if args.explain:
            router = book.router(model)
            for row, prompt in zip(rows, prompts):
                row["explain"] = router.explain(prompt)
    if args.json:
        print_json(rows)
        return 0
    header = [h for h in rows[0] if h != "explain"]
    print(markdown_table(header, [["-" if r[h] is None else r[h] for h in header] for r in rows]))
    for row in rows:
        if "explain" in row:
            _print_explanation(str(row["prompt"]), row["explain"])  # type: ignore[arg-type]
    return 0
