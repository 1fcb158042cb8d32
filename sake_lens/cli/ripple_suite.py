"""``sake-lens ripple-suite``: build the ripple suite from what the model itself knows.

Well-known subjects (landmarks, companies, people) whose country the model knows are moved to
another country it knows; each edit gets the RippleEdits probe families, every hop checked on
the model (see :mod:`sake_lens.evaluate.ripple`). The output is a JSON file that
``sake-lens eval --data`` reads (``--split dev`` / ``--split test`` for either half).
"""

from __future__ import annotations

import argparse

from .common import (
    BATCH_SIZE,
    SEED,
    add_int_option,
    add_model_args,
    load_from_args,
    markdown_table,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ripple-suite",
        help="build the ripple suite (implications of country edits) for the model",
        description="Build the ripple suite for the model: subjects whose country it knows, "
        "each moved to another country it knows, with compositional, alias, description, "
        "relation-specificity and object-side probes checked hop by hop on the model. "
        "`sake-lens eval --data FILE --split test --mode all` scores it.",
    )
    p.add_argument("--out", required=True, metavar="FILE.json", help="the suite to write")
    add_int_option(p, "--seed", SEED, default=0, help="draws the new countries and the split")
    add_int_option(p, "--batch-size", BATCH_SIZE, default=32, help="prompts per generation call")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.known_facts import check_output_path, write_known_facts
    from ..evaluate.ripple import FAMILIES, build_ripple_suite, ripple_subjects, ripple_templates

    # Every argument is checked, and the data files read, before the model is loaded.
    out = check_output_path(args.out, args.out + ".source")
    ripple_templates()
    ripple_subjects()
    model = load_from_args(args)
    suite = build_ripple_suite(
        model,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    write_known_facts(suite, out)
    counts = suite["manifest"]["counts"]
    records = suite["records"]
    rows = []
    for family in FAMILIES:
        row: list[str | int] = [family]
        for split in ("dev", "test"):
            probes = [
                p
                for r in records
                if r["split"] == split
                for p in r["ripple"]
                if p["family"] == family and not p["ambiguous"]
            ]
            row.append(len(probes))
        rows.append(row)
    print(
        f"{counts['edits']} edits of {counts['candidates']} candidates "
        f"({counts['edits_by_split']}), {counts['probes']} probes "
        f"({counts['ambiguous']} ambiguous, not scored); written to {out}\n"
    )
    print(markdown_table(["family", "dev probes", "test probes"], rows))
    return 0
