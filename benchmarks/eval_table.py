"""The README's results table from ``sake-lens eval`` result files, one column per run.

    python benchmarks/eval_table.py benchmarks/results/eval-2000-2080/{none,in-context,mean-shift,sake,sake-reference}.json.gz

(``.json`` or gzipped ``.json.gz`` files of finished runs.) Each cell is the run's stored
``mean [95 % bootstrap interval by record] (n)``, rates in percent; a metric whose interval is a
single point prints without it. ``--metrics`` picks other rows (any name of
``sake_lens.evaluate.metrics.METRICS``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path
from typing import Any

from sake_lens.evaluate.metrics import METRICS, UNSCALED_METRICS

#: The README's rows: (metric, label).
ROWS: tuple[tuple[str, str], ...] = (
    ("efficacy", "efficacy"),
    ("paraphrase", "paraphrase"),
    ("generation_prompt", "generation_prompt (auxiliary)"),
    ("generation", "generation (whole new object, 20 tokens)"),
    ("locality_relation", "locality_relation (same subject, other relations)"),
    ("locality_relation_gen", "locality_relation_gen (8 tokens)"),
    ("locality_neighbour", "locality_neighbour"),
    ("locality_text", "locality_text"),
    ("specificity", "specificity (neighbours the model knows)"),
    ("doubt_1", "doubt_1"),
    ("doubt_2", "doubt_2"),
    ("long_context", "long_context"),
    ("gate_tpr", "gate_tpr"),
    ("gate_fpr_relation", "gate_fpr_relation"),
    ("gate_fpr_passage", "gate_fpr_passage"),
    ("implication", "implication"),
    ("implication_new_object", "implication_new_object"),
)


def cell(agg: dict[str, Any] | None, name: str) -> str:
    if not agg or agg.get("mean") is None:
        return "n/a"
    scale = 1.0 if name in UNSCALED_METRICS else 100.0
    mean, lo, hi = (scale * agg[k] for k in ("mean", "ci_low", "ci_high"))
    digits = 2 if name in UNSCALED_METRICS else 1
    if f"{lo:.{digits}f}" == f"{hi:.{digits}f}":
        return f"{mean:.{digits}f} ({agg['n']})"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] ({agg['n']})"


def load(path: Path) -> dict[str, Any]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    run = json.loads(raw)
    if not run.get("complete"):
        raise SystemExit(f"{path}: the run is not complete; resume it with its eval command.")
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--labels", nargs="+", help="column names (default: the methods)")
    p.add_argument("--metrics", nargs="+", choices=sorted(METRICS), help="rows (default: README)")
    args = p.parse_args()
    runs = [load(f) for f in args.files]
    names = args.labels or [r["config"]["method"] for r in runs]
    rows = [(m, m) for m in args.metrics] if args.metrics else list(ROWS)
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for m, label in rows:
        print(f"| {label} | " + " | ".join(cell(r["aggregates"].get(m), m) for r in runs) + " |")
    times = []
    for r in runs:
        t = r["timings"]
        fit = statistics.mean(t["fit_s"].values()) if t["fit_s"] else 0.0
        ev = statistics.mean(t["eval_s"].values()) if t["eval_s"] else 0.0
        times.append(f"{fit:.1f} + {ev:.1f}")
    print("| fit + eval s / record | " + " | ".join(times) + " |")


if __name__ == "__main__":
    main()
