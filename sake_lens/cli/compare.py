"""``sake-lens compare``: evaluation runs of several methods side by side.

Reads result files of ``sake-lens eval --out`` (finished runs of the same records, data file and
model), prints one markdown table per metric family with each run's mean, 95% interval and n,
and the paired difference of every run against the reference (the first file, or
``--reference METHOD``) with a 95% bootstrap interval over records.
"""

from __future__ import annotations

import argparse
import sys

from .common import SEED, add_int_option, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare evaluation runs of several methods side by side",
        description="Compare result files of `sake-lens eval --out` (finished runs of the same "
        "records, data file and model): one markdown table per metric family with each run's "
        "mean [95% interval] (n), and per run the paired difference against the reference "
        "(the first file, or --reference) with a 95% percentile bootstrap interval over "
        "records. Rates are in percent.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN.json", help="result files of sake-lens eval")
    p.add_argument(
        "--reference",
        default=None,
        metavar="METHOD",
        help="the run the others are compared with: its method (or column label); "
        "default: the first file",
    )
    add_int_option(p, "--seed", SEED, default=0, help="seed of the paired bootstrap")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--out-json", metavar="FILE", help="also write the JSON to FILE")
    p.add_argument("--out-html", metavar="FILE", help="also write tables and figure to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare_runs, load_run

    runs = [load_run(path) for path in args.runs]
    reference = 0 if args.reference is None else args.reference
    comparison = compare_runs(runs, reference=reference, seed=args.seed)
    if args.json:
        print_json(comparison.to_dict())
    else:
        print(comparison.to_markdown(), end="")
    for path, write in (
        (args.out_json, comparison.write_json),
        (args.out_html, comparison.write_html),
    ):
        if path:
            print(f"written to {write(path)}", file=sys.stderr)
    return 0
