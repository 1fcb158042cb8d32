"""Ablation: which sentence-embedding gate routes the evaluation's probes best, with every edit
of the run in one registry (the harness's ``all`` mode), without fitting a single map.

For each of the first ``--n`` CounterFact records, the edit's in-scope prompts are exactly the
paraphrases ``sake-lens eval`` fits it with (:func:`~sake_lens.prompts.leakage.fitting_prompts`,
40 per record), and its gate is calibrated as :class:`~sake_lens.registry.EditBook` does (the
other edits' paraphrases among the out-of-scope prompts). Then every probe of the evaluation
suite (:func:`~sake_lens.evaluate.suite.build_probes`) is routed by text over all gates at once,
and the table reports, per probe kind, how often the probe reaches its **own** edit (in-scope
kinds: edit, paraphrase, doubt, long context, implication) or **any** edit (out-of-scope kinds:
neighbourhood, unrelated, neutral text). Gate configurations differ in the text view
(``GateConfig.text``) and the false-positive budget (``GateConfig.fpr``). Sentence embeddings
only: no model forward pass, so 200 records take a few minutes on a CPU. Run::

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/gate_views.py \\
        --data ../shared/data/counterfact/dev.json --n 200
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

from _common import environment, markdown_table

from sake_lens.evaluate.data import load_records
from sake_lens.evaluate.methods import fact_router
from sake_lens.evaluate.suite import SuiteConfig, build_probes
from sake_lens.gate import FeatureCache, GateConfig
from sake_lens.gate.embedder import default_embedder

IN_SCOPE = ("edit", "paraphrase", "doubt", "long_context", "implication")
OUT_OF_SCOPE = ("neighbourhood", "unrelated", "neutral")


def route_all(
    records: list[Any],
    probes: list[list[Any]],
    gate: GateConfig,
    n_paraphrases: int,
    seed: int,
    features: FeatureCache,
) -> dict[str, dict[str, float]]:
    router = fact_router(records, gate, n_paraphrases=n_paraphrases, seed=seed, features=features)
    texts = [p.prompt for ps in probes for p in ps]
    owners = [i for i, ps in enumerate(probes) for _ in ps]
    kinds = [p.kind for ps in probes for p in ps]
    routes = router.route_texts(texts).tolist()
    hit: dict[str, list[int]] = defaultdict(list)
    for kind, owner, route in zip(kinds, owners, routes):
        hit[kind].append(int(route == owner) if kind in IN_SCOPE else int(route >= 0))
    return {k: {"rate": 100 * sum(v) / len(v), "n": len(v)} for k, v in hit.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/counterfact/dev.json")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--skip", type=int, default=0, help="start after this many records")
    p.add_argument("--n-paraphrases", type=int, default=40)
    p.add_argument("--views", nargs="+", default=["both", "sentences"])
    p.add_argument("--fprs", nargs="+", type=float, default=[0.05, 0.1])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from sake_lens import load_model

    tok = load_model().tokenizer  # token counts of the long-context probes
    records = load_records(args.data).records[args.skip : args.skip + args.n]
    suite = SuiteConfig()
    probes = [build_probes(r, suite, seed=args.seed, tokenizer=tok) for r in records]
    features = FeatureCache(embedder=default_embedder())

    kinds = [k for k in (*IN_SCOPE, *OUT_OF_SCOPE) if any(q.kind == k for ps in probes for q in ps)]
    rows, results = [], []
    for view in args.views:
        for fpr in args.fprs:
            start = time.perf_counter()
            gate = GateConfig(text=view, fpr=fpr)
            res = route_all(records, probes, gate, args.n_paraphrases, args.seed, features)
            results.append({"text": view, "fpr": fpr, "routes": res})
            rows.append(
                [view, fpr, *(f"{res[k]['rate']:.1f}" for k in kinds), time.perf_counter() - start]
            )
    head = [f"{k} ({'own' if k in IN_SCOPE else 'any'}) %" for k in kinds]
    print(markdown_table(["text view", "fpr", *head, "s"], rows))
    print(
        json.dumps(
            {
                "benchmark": "gate_views",
                "n": len(records),
                "skip": args.skip,
                "results": results,
                "env": environment("cpu"),
            }
        )
    )


if __name__ == "__main__":
    main()
