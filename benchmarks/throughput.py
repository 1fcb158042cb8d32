"""Benchmark: edits per minute, evaluation records per minute, cold and warm model load.

* **edits/min**: ``make_edit`` with its defaults (40 template-bank paraphrases, default
  distributions and site) on ``--edits`` CounterFact records, in process, model loaded.
* **records/min**: ``sake_lens.evaluate.runner.run_evaluation`` (what ``sake-lens eval`` runs)
  on the first ``--n`` records of ``dev.json``, in process, model loaded (``--no-eval`` skips).
* **load**: ``load_model()`` in a fresh subprocess, with the imports (torch, transformers,
  TransformerLens, sake_lens) timed separately. *Warm*: ``$SAKE_LENS_CACHE`` already holds the
  saved checkpoint. *Cold*: an empty temporary ``SAKE_LENS_CACHE`` (the GGUF is dequantised and
  the checkpoint written). The foundation issue requires a warm load <= 5 s.

Run::

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/throughput.py \
        --device cpu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import dev_data, environment, markdown_table, median, timed

DATA = Path(dev_data())

LOAD_SNIPPET = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import torch, transformers, transformer_lens, sake_lens
t1, c1 = time.perf_counter(), time.process_time()
model = sake_lens.load_model(device=sys.argv[1])
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "import_cpu_s": c1 - c0,
                  "load_cpu_s": c2 - c1}))
"""


def load_once(device: str, cache: str) -> dict[str, float]:
    env = dict(os.environ, SAKE_LENS_CACHE=cache)
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, device],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="warm loads")
    p.add_argument("--cold", type=int, default=1, help="cold loads (each ~40 s on CPU)")
    p.add_argument("--edits", type=int, default=5)
    p.add_argument("--n", type=int, default=5, help="evaluation records")
    p.add_argument("--no-eval", action="store_true")
    args = p.parse_args()

    warm_cache = os.environ.get("SAKE_LENS_CACHE")
    if not warm_cache:
        sys.exit("Set SAKE_LENS_CACHE to the warm cache folder (the default model saved there).")
    warm = [load_once(args.device, warm_cache) for _ in range(args.repeats)]
    print(f"warm loads: {warm}", file=sys.stderr, flush=True)
    cold = []
    for _ in range(args.cold):
        with tempfile.TemporaryDirectory(prefix="slcache-cold-") as tmp:
            cold.append(load_once(args.device, tmp))
    print(f"cold loads: {cold}", file=sys.stderr, flush=True)

    from sake_lens import EditRequest, load_model
    from sake_lens.errors import SakeLensError
    from sake_lens.steer.workflow import make_edit

    model = load_model(device=args.device)
    records = json.loads(DATA.read_text())
    made, failed, edit_times = 0, 0, []
    for r in records[: args.edits]:
        req = EditRequest(r["subject"], r["prompt"], r["ground_truth"], r["target_new"])
        try:
            _, w, _ = timed(lambda req=req: make_edit(model, req), args.device)
            made += 1
        except SakeLensError:
            failed += 1
            continue
        edit_times.append(w)
        print(f"make_edit: {w:.1f} s", file=sys.stderr, flush=True)

    ev: dict[str, Any] = {}
    if not args.no_eval:
        from sake_lens.evaluate.runner import EvalConfig, run_evaluation

        cfg = EvalConfig(data=str(DATA), n=args.n)
        res, w, c = timed(lambda: run_evaluation(model, cfg, progress=False), args.device)
        ev = {
            "records": len(res["records"]),
            "wall_s": w,
            "cpu_s": c,
            "per_min": 60 * len(res["records"]) / w,
        }

    rows = [
        ["warm load_model() (subprocess)", median([x["load_s"] for x in warm]), len(warm)],
        [
            "  imports (torch, transformers, TL, sake_lens)",
            median([x["import_s"] for x in warm]),
            len(warm),
        ],
    ]
    if cold:
        rows += [
            ["cold load_model() (empty cache)", median([x["load_s"] for x in cold]), len(cold)],
            ["  imports", median([x["import_s"] for x in cold]), len(cold)],
        ]
    if edit_times:
        rows.append(["make_edit (defaults), s per edit", median(edit_times), len(edit_times)])
    if ev:
        rows.append(
            [
                f"run_evaluation, s per record (n={ev['records']})",
                ev["wall_s"] / max(ev["records"], 1),
                1,
            ]
        )
    print(markdown_table(["measure", "seconds (median)", "runs"], rows))
    print()
    rates = []
    if edit_times:
        rates.append(["edits per minute (make_edit defaults)", 60 / median(edit_times)])
    if ev:
        rates.append(["evaluation records per minute (sake-lens eval defaults)", ev["per_min"]])
    if rates:
        print(markdown_table(["rate", "per minute"], rates))
    print(
        json.dumps(
            {
                "benchmark": "throughput",
                "warm": warm,
                "cold": cold,
                "edit_s": edit_times,
                "edits_failed": failed,
                "eval": ev,
                "env": environment(args.device),
            }
        )
    )


if __name__ == "__main__":
    main()
