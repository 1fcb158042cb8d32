"""``sake-lens known-facts``: keep the CounterFact facts the model itself knows.

A record is kept when the model's greedy continuation of its edit prompt is its true object, or
when that of at least one of its neighbourhood prompts is the neighbour's answer; only the known
neighbourhood prompts are kept. The output is a JSON file that ``sake-lens eval --data`` reads,
with a manifest naming the model (see :mod:`sake_lens.evaluate.known_facts`).
"""

from __future__ import annotations

import argparse

from .common import BATCH_SIZE, RECORDS, add_int_option, add_model_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "known-facts",
        help="keep the records and neighbourhood prompts the model itself knows",
        description="Keep the CounterFact records whose edit prompt the model completes, "
        "greedy, with the whole true object, and the neighbourhood prompts it completes with "
        "their answers; write them, with a manifest naming the model, to a JSON file that "
        "`sake-lens eval --data` reads.",
    )
    p.add_argument("--data", required=True, metavar="PATH", help="CounterFact JSON or a YAML list")
    p.add_argument("--out", required=True, metavar="FILE.json", help="the known-fact set to write")
    p.add_argument(
        "--records",
        default=None,
        metavar="A:B",
        help="the valid records at file positions A <= i < B (0-based); exclusive with --n",
    )
    add_int_option(p, "--n", RECORDS, default=None, help="first N valid records (default: all)")
    add_int_option(p, "--batch-size", BATCH_SIZE, default=32, help="prompts per generation call")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..evaluate.known_facts import (
        KnownFactsConfig,
        build_known_facts,
        check_output_path,
        parse_records_range,
        select_records,
        write_known_facts,
    )

    # Every argument is checked, and the data read, before the model is loaded.
    if args.records is not None and args.n is not None:
        raise DataError("Give either --records A:B or --n N, not both.")
    records = parse_records_range(args.records) if args.records is not None else None
    config = KnownFactsConfig(data=args.data, records=records, n=args.n, batch_size=args.batch_size)
    out = check_output_path(args.out, args.data)
    selection = select_records(config)

    model = load_from_args(args)
    result = build_known_facts(
        model, config, selection=selection, progress=False if args.no_progress else None
    )
    write_known_facts(result, out)
    counts = result["manifest"]["counts"]
    skipped = counts["records_skipped"]
    print(
        f"kept {counts['records_kept']} / {counts['records_read']} records "
        f"({counts['known_edit_prompts']} known edit prompts), "
        f"{counts['neighbourhood_prompts_kept']} / {counts['neighbourhood_prompts_read']} "
        "neighbourhood prompts"
        + (f", {skipped} bad records skipped" if skipped else "")
        + f"; written to {out}"
    )
    return 0
