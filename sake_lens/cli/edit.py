"""``sake-lens edit``: fit one edit and show greedy continuations before and after it."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .common import (
    NEW_TOKENS,
    PARAPHRASES,
    SEED,
    add_int_option,
    add_model_args,
    load_from_args,
    markdown_table,
    print_json,
)

log = logging.getLogger(__name__)


def check_old_object(model: Any, request: Any) -> str:
    """The unedited model's continuation of the edit prompt; warn when it lacks the old object
    (a wrong ``--old`` still gives an edit towards ``--new``, but the user should know)."""
    from ..evaluate.metrics import contains_object
    from ..steer.generation import generate

    n = len(model.tokenizer.encode(" " + request.old, add_special_tokens=False)) + 4
    said = str(generate(model, [request.text], max_new_tokens=n)[0])
    if not contains_object(said, request.old, request.subject):
        log.warning(
            "The unedited model does not say %r after %r; it says %r. The edit is fitted "
            "anyway and moves the model towards %r; check --old.",
            request.old,
            request.text,
            said.strip(),
            request.new,
        )
    return said


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="fit an edit and compare continuations before/after")
    p.add_argument("--prompt", required=True, help="template with {} for the subject")
    p.add_argument("--subject", required=True)
    p.add_argument("--old", required=True, help="the object the model says now")
    p.add_argument("--new", required=True, help="the object it should say")
    p.add_argument(
        "--paraphrase",
        action="append",
        default=[],
        metavar="P",
        help="a paraphrase of the prompt (repeatable; default: the relation template bank)",
    )
    add_int_option(p, "--n-paraphrases", PARAPHRASES, default=20, help="paraphrases from the bank")
    p.add_argument("--site", default=None, help="hook name (default: the library default)")
    p.add_argument("--probe", action="append", default=[], metavar="TEXT", help="repeatable")
    add_int_option(p, "--max-new-tokens", NEW_TOKENS, default=8, help="tokens generated per probe")
    add_int_option(p, "--seed", SEED, default=0, help="draws the paraphrases from the bank")
    p.add_argument(
        "--json", action="store_true", help="print a JSON list of {probe, before, after}"
    )
    p.add_argument("--save", metavar="DIR", help="add the edit to a registry directory")
    p.add_argument(
        "--implications",
        action="store_true",
        help="also fit the edit's implied edits (the capital, language... of a new country), "
        "each behind its own gate",
    )
    add_model_args(p)
    p.set_defaults(func=run)


def build_edit(model: Any, args: argparse.Namespace) -> Any:
    from ..prompts.request import EditRequest
    from ..steer.workflow import make_edit

    request = EditRequest(args.subject, args.prompt, args.old, args.new)
    return make_edit(
        model,
        request,
        paraphrases=args.paraphrase or None,
        n_paraphrases=args.n_paraphrases,
        site=args.site,
        seed=args.seed,
        implications=args.implications,
    )


def run(args: argparse.Namespace) -> int:
    from ..prompts.distributions import check_paraphrases
    from ..prompts.request import EditRequest
    from ..registry.book import EditBook
    from ..steer.generation import generate

    request = EditRequest(args.subject, args.prompt, args.old, args.new)  # before the model
    check_paraphrases(request, args.paraphrase)
    model = load_from_args(args)
    check_old_object(model, request)
    edit = build_edit(model, args)
    probes = args.probe or [edit.request.text]
    before = generate(model, probes, max_new_tokens=args.max_new_tokens)
    gated = EditBook(model=model)  # the edit behind its calibrated scope gate
    gated.add(edit)
    with gated.steer(model):
        after = generate(model, probes, max_new_tokens=args.max_new_tokens)
    rows = [{"probe": p, "before": b, "after": a} for p, b, a in zip(probes, before, after)]
    if args.save:
        from ..registry.book import EditBook

        book = EditBook.open(args.save, model=model, create=True)
        book.add(edit)
        book.save()
    if args.json:
        print_json(rows)
    else:
        print(
            f"edit {edit.id}: {edit.request.text!r} {edit.request.old!r} -> {edit.request.new!r}"
            f" at {edit.site} (target purity {edit.purity:.0%}, {edit.n_source} source / "
            f"{edit.n_target} target samples)"
        )
        for x in edit.implied:
            print(f"implied edit {x.id}: {x.request.text!r} {x.request.old!r} -> {x.request.new!r}")
        print(markdown_table(["probe", "before", "after"], [list(r.values()) for r in rows]))
        if args.save:
            print(f"saved to {args.save}")
    return 0
