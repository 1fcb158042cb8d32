"""The README's results table from ``sake-lens eval`` result files, one column per run.

    python benchmarks/eval_table.py benchmarks/results/eval-2000-2080/{none,in-context,mean-shift,sake,sake-reference}.json.gz

(``.json`` or gzipped ``.json.gz`` files of finished runs.) Each cell is the run's stored
``mean [95 % bootstrap interval by record] (n)``, rates in percent; a metric whose interval is a
single point prints without it. ``--metrics`` picks other rows (any name of
``sake_lens.evaluate.metrics.METRICS``).

    python benchmarks/eval_table.py --sync README.md docs/concepts/defaults.md [--check]

regenerates (or, with ``--check``, verifies) every table those files mark with
``<!-- eval-table FILE ... -->`` ... ``<!-- /eval-table -->`` from the result files it names;
the test suite runs the check, so a published table cannot drift from its results.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
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


def render(
    files: list[Path], labels: list[str] | None = None, metrics: list[str] | None = None
) -> str:
    """The markdown table of ``files`` (one column per run)."""
    runs = [load(f) for f in files]
    names = labels or [r["config"]["method"] for r in runs]
    rows = [(m, m) for m in metrics] if metrics else list(ROWS)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m, label in rows:
        lines.append(
            f"| {label} | " + " | ".join(cell(r["aggregates"].get(m), m) for r in runs) + " |"
        )
    times = []
    for r in runs:
        t = r["timings"]
        fit = statistics.mean(t["fit_s"].values()) if t["fit_s"] else 0.0
        ev = statistics.mean(t["eval_s"].values()) if t["eval_s"] else 0.0
        times.append(f"{fit:.1f} + {ev:.1f}")
    lines.append("| fit + eval s / record | " + " | ".join(times) + " |")
    return "\n".join(lines) + "\n"


#: A generated table in a markdown file: ``<!-- eval-table FILE ... -->`` (paths relative to
#: the repository root), the table, ``<!-- /eval-table -->``.
MARKER = re.compile(
    r"(<!-- eval-table (?P<files>[^>]*?) -->\n)(?P<table>.*?)(<!-- /eval-table -->)", re.S
)


def sync(doc: Path, root: Path, *, check: bool) -> list[str]:
    """Regenerate every marked table of ``doc`` from its result files; with ``check``, only
    report (as messages) the tables that differ from what their files give."""
    text = doc.read_text(encoding="utf-8")
    stale: list[str] = []

    def fresh(m: re.Match[str]) -> str:
        files = [root / f for f in m["files"].split()]
        table = render(files)
        if table != m["table"]:
            stale.append(f"{doc}: the table from {m['files']} is stale")
        return m.group(1) + table + m.group(4)

    new = MARKER.sub(fresh, text)
    if not check and new != text:
        doc.write_text(new, encoding="utf-8")
    return stale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--labels", nargs="+", help="column names (default: the methods)")
    p.add_argument("--metrics", nargs="+", choices=sorted(METRICS), help="rows (default: README)")
    p.add_argument(
        "--sync",
        nargs="+",
        type=Path,
        metavar="DOC.md",
        help="regenerate the marked tables of these markdown files instead",
    )
    p.add_argument("--check", action="store_true", help="with --sync: fail on a stale table")
    args = p.parse_args()
    if args.sync:
        root = Path(__file__).resolve().parent.parent
        stale = [msg for doc in args.sync for msg in sync(doc, root, check=args.check)]
        for msg in stale:
            print(msg)
        raise SystemExit(1 if stale and args.check else 0)
    print(render(args.files, args.labels, args.metrics), end="")


if __name__ == "__main__":
    main()
