"""Ablation: the map's regulariser, kind and strength, and the target contexts, on the probes a
gate lets through.

For each of the first ``--n`` CounterFact records, the edit's source and target activations
are collected once (the paraphrases ``sake-lens eval`` fits it with); every variant is then a
refit on those same activations — no new forward pass for the fit — and is applied, **ungated**,
to the record's in-scope probes: the edit prompt, the rephrased prompt and the two doubt
follow-ups. A probe counts as a success when the greedy next token starts the new object (the
paper's rule). The scope gate is measured separately (``benchmarks/gate_kinds.py``); this
isolates what the map does once the gate fires. Run::

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/map_ablation.py \\
        --data dev.json --n 30
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from collections import defaultdict
from typing import Any

from _common import dev_data, environment, markdown_table

from sake_lens import load_model
from sake_lens.collect.activations import collect_activations
from sake_lens.errors import SakeLensError
from sake_lens.evaluate.data import load_records
from sake_lens.evaluate.methods import fitting_paraphrases
from sake_lens.model.tokens import starts_object
from sake_lens.prompts.distributions import DistributionConfig
from sake_lens.prompts.probes import doubt_probes
from sake_lens.steer.edit import EditConfig, fit_edit
from sake_lens.steer.hooks import steering_hooks

KINDS = ("edit", "paraphrase", "doubt_1", "doubt_2")


def probes_of(record: Any) -> list[tuple[str, str]]:
    req = record.request
    out = [("edit", req.text)] + [("paraphrase", p) for p in record.paraphrase_prompts[:1]]
    out += [(f"doubt_{i + 1}", p.prompt) for i, p in enumerate(doubt_probes(req))]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default=dev_data(),
        help="default: $SAKE_LENS_DATA or benchmarks/data/counterfact-dev.json",
    )
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--skip", type=int, default=0, help="start after this many records")
    p.add_argument("--n-paraphrases", type=int, default=20)
    p.add_argument("--templates", nargs="+", default=None, help="target templates")
    p.add_argument("--regs", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    p.add_argument("--alphas", nargs="+", type=float, default=[1.0, 1.5, 2.0])
    p.add_argument("--kinds", nargs="+", default=["gaussian", "mean-shift"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    model = load_model()
    records = load_records(args.data).records[args.skip : args.skip + args.n]
    dist = DistributionConfig()
    if args.templates:
        dist = DistributionConfig(target_templates=tuple(args.templates))
    base = EditConfig(distributions=dist)
    variants = [
        (kind, reg, alpha)
        for kind, reg, alpha in itertools.product(args.kinds, args.regs, args.alphas)
        if kind == "gaussian" or reg == args.regs[0]  # mean shift has no regulariser
    ]
    hits: dict[tuple[str, float, float], dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(list)
    )
    failed, start = 0, time.perf_counter()
    for record in records:
        paras = fitting_paraphrases(record, args.n_paraphrases, args.seed)
        try:
            edit = fit_edit(model, record.request, paras, config=base, keep_activations=True)
        except SakeLensError:
            failed += 1
            continue
        assert edit.source_acts is not None and edit.target_acts is not None
        probes = probes_of(record)
        for kind, reg, alpha in variants:
            cfg = dataclasses.replace(base, map_kind=kind, reg=reg, alpha=alpha)
            fitted = cfg.make_map().fit(edit.source_acts, edit.target_acts)
            variant = dataclasses.replace(edit, map=fitted, config=cfg)
            acts = collect_activations(
                model,
                [q for _, q in probes],
                [edit.site],
                predict=True,
                progress=False,
                extra_hooks=steering_hooks([variant]),
            )
            assert acts.predictions is not None
            for (name, _), tok in zip(probes, acts.predictions.tolist()):
                ok = starts_object(model.tokenizer.decode(tok), record.request.new)
                hits[(kind, reg, alpha)][name].append(int(ok))
    rows, results = [], []
    for key in variants:
        rates = {k: 100 * sum(v) / len(v) for k, v in hits[key].items() if v}
        results.append({"map": key[0], "reg": key[1], "alpha": key[2], "rates": rates})
        rows.append([*key, *(f"{rates.get(k, float('nan')):.1f}" for k in KINDS)])
    head = ["map", "reg", "alpha", *(f"{k} %" for k in KINDS)]
    print(markdown_table(head, rows))
    print(
        json.dumps(
            {
                "benchmark": "map_ablation",
                "n": len(records),
                "skip": args.skip,
                "failed": failed,
                "n_paraphrases": args.n_paraphrases,
                "target_templates": list(dist.target_templates),
                "results": results,
                "seconds": time.perf_counter() - start,
                "env": environment("cpu"),
            }
        )
    )


if __name__ == "__main__":
    main()
