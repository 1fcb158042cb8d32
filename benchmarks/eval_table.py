"""One markdown table comparing ``sake-lens eval`` result files side by side (mean [95 % CI]).

    cd benchmarks/results/eval-200
    python ../../eval_table.py {none,in-context,mean-shift,sake,sake-reference}.json.gz

(``.json`` or gzipped ``.json.gz`` result files.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

from sake_lens.cli.eval import SUMMARY_METRICS

#: The CLI's summary metrics, with the two halves of ``generation`` beside it.
METRICS = tuple(
    name
    for m in SUMMARY_METRICS
    if m != "edit_applied"
    for name in ((m, "generation_new", "generation_no_old") if m == "generation" else (m,))
)
#: Shown as is (bits of n-gram entropy); every other metric is a fraction shown in %.
RAW = {"entropy_change"}


def cell(agg: dict | None, name: str) -> str:
    if not agg or agg.get("mean") is None:
        return "n/a"
    scale = 1.0 if name in RAW else 100.0
    mean, lo, hi = (scale * agg[k] for k in ("mean", "ci_low", "ci_high"))
    digits = 2 if name in RAW or name == "ppl_change" else 1
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] (n={agg['n']})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--labels", nargs="+", help="column names (default: the methods)")
    p.add_argument(
        "--by-run", nargs="+", metavar="METRIC", help="one row per run with these metrics' means"
    )
    args = p.parse_args()
    runs = [
        json.loads(gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_text())
        for f in args.files
    ]
    names = args.labels or [r["config"]["method"] for r in runs]
    if args.by_run:
        print("| run | " + " | ".join(args.by_run) + " |")
        print("|---" * (len(args.by_run) + 1) + "|")
        for name, r in zip(names, runs):
            means = [cell(r["aggregates"].get(m), m).split(" [")[0] for m in args.by_run]
            print(f"| {name} | " + " | ".join(means) + " |")
        return
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for m in METRICS:
        print(f"| {m} | " + " | ".join(cell(r["aggregates"].get(m), m) for r in runs) + " |")
    rows = []
    for r in runs:
        t = r["timings"]
        fit = statistics.mean(t["fit_s"].values()) if t["fit_s"] else 0.0
        ev = statistics.mean(t["eval_s"].values()) if t["eval_s"] else 0.0
        rows.append(f"{fit:.1f} + {ev:.1f}")
        assert r["complete"], f"{r['config']['method']}: the run is not complete"
    print("| fit + eval s / record | " + " | ".join(rows) + " |")
    print("| edits failed | " + " | ".join(str(r["n_edit_failed"]) for r in runs) + " |")


if __name__ == "__main__":
    main()
