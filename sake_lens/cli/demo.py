"""``sake-lens demo``: a few built-in edits of facts the default model knows, before/after."""

from __future__ import annotations

import argparse
import time

from .common import NEW_TOKENS, add_int_option, add_model_args, load_from_args, markdown_table

# (subject, template, old, new, an unseen paraphrase, another fact of the same subject, a
# prompt about another subject). The edit must move the first two and leave the last two.
DEMO_EDITS = (
    (
        "Danielle Darrieux",
        "The mother tongue of {} is",
        "French",
        "English",
        "Danielle Darrieux's native language is",
        "Danielle Darrieux worked as a",
        "The mother tongue of Victor Hugo is",
    ),
    (
        "Eiffel Tower",
        "The {} is located in the city of",
        "Paris",
        "Rome",
        "You can visit the Eiffel Tower in the city of",
        "The Eiffel Tower was built in the year",
        "The Colosseum is located in the city of",
    ),
    (
        "Japan",
        "The official language of {} is",
        "Japanese",
        "French",
        "People in Japan officially speak",
        "The capital of Japan is",
        "The official language of Germany is",
    ),
)

# An edit with its implied edits (sake_lens.steer.implied): the new country's capital and
# language follow; the old country's own facts stay. (subject, template, old, new, probes)
DEMO_IMPLICATIONS = (
    "Eiffel Tower",
    "The {} is located in the country of",
    "France",
    "Italy",
    (
        ("implication: capital", "The capital city of the country that the Eiffel Tower is in is"),
        (
            "implication: language",
            "The official language of the country that the Eiffel Tower is in is",
        ),
        ("old country's own fact", "The capital of France is"),
        ("same subject, other fact", "The Eiffel Tower was designed by"),
    ),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="edit a few facts of the default model and show the effect")
    add_model_args(p)
    add_int_option(p, "--max-new-tokens", NEW_TOKENS, default=6, help="tokens generated per probe")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..prompts.request import EditRequest
    from ..registry.book import EditBook
    from ..steer.generation import generate
    from ..steer.workflow import make_edit

    start = time.perf_counter()
    model = load_from_args(args)
    print(f"model loaded in {time.perf_counter() - start:.1f} s")
    for subject, template, old, new, paraphrase, other_fact, unrelated in DEMO_EDITS:
        t0 = time.perf_counter()
        request = EditRequest(subject, template, old, new)
        edit = make_edit(model, request)
        book = EditBook(model=model)  # the edit behind its calibrated scope gate
        book.add(edit)
        probes = [request.text, paraphrase, other_fact, unrelated]
        before = generate(model, probes, max_new_tokens=args.max_new_tokens)
        with book.steer(model):
            after = generate(model, probes, max_new_tokens=args.max_new_tokens)
        print(f"\n## {request.text} {old} -> {new}  (fitted in {time.perf_counter() - t0:.1f} s)")
        kinds = ["edit prompt", "unseen paraphrase", "same subject, other fact", "other subject"]
        rows = [[k, p, b, a] for k, p, b, a in zip(kinds, probes, before, after)]
        print(markdown_table(["probe", "prompt", "before", "after"], rows))
    subject, template, old, new, extra = DEMO_IMPLICATIONS
    t0 = time.perf_counter()
    request = EditRequest(subject, template, old, new)
    edit = make_edit(model, request, implications=True)
    book = EditBook(model=model)  # the edit and its implied edits, each behind its own gate
    book.add(edit)
    probes = [request.text, *(p for _, p in extra)]
    before = generate(model, probes, max_new_tokens=args.max_new_tokens)
    with book.steer(model):
        after = generate(model, probes, max_new_tokens=args.max_new_tokens)
    implied = ", ".join(
        f"{x.implication[1]} {x.request.old} -> {x.request.new}" for x in edit.implied
    )
    print(
        f"\n## {request.text} {old} -> {new}, with its implications ({implied}; fitted in "
        f"{time.perf_counter() - t0:.1f} s)"
    )
    kinds = ["edit prompt", *(k for k, _ in extra)]
    rows = [[k, p, b, a] for k, p, b, a in zip(kinds, probes, before, after)]
    print(markdown_table(["probe", "prompt", "before", "after"], rows))
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
    return 0
