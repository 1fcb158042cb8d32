"""Routing at scale: 1, 10, 100 and 1,000 edits' gates active at once, and what routing costs.

Edits come from dev records 0-1999 (the first N of ``--edits``); each edit's gate is fitted on
the paraphrases ``sake-lens eval`` fits it with, as a registry fits it. Gates only — no map is
fitted, so the curve is about *routing*: an in-scope probe that reaches its own edit is steered
by that edit's map (whose efficacy the evaluation harness measures), a locality probe routed
nowhere is the unedited model's output by construction.

* **in scope** (own edit): the edit prompt, CounterFact's paraphrases of the relation, the doubt
  follow-ups and the long-context prompt of the first ``--measured`` edits;
* **locality** (any edit): prompts about held-out subjects (``--locality`` records, 2000 and
  up): their other relations, their neighbourhood prompts, unrelated text and passages.

Routing cost: a batch of prompts — half of them in-scope probes of served edits, half
held-out locality probes — is routed (fresh sentence embeddings each time) and,
side by side, run through the unedited model; the table gives medians and their ratio. Run on
a quiet machine::

    .venv/bin/python benchmarks/gate_scale.py --data dev.json \\
        --out benchmarks/results/gate-scale
    .venv/bin/python benchmarks/gate_scale.py ... --docs docs/analyses/gate-scale.md
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import dev_data, environment, markdown_table, median
from gate_kinds import error_bars, wilson

from sake_lens.analysis.provenance import front_matter_lines
from sake_lens.evaluate.data import load_records
from sake_lens.evaluate.known_facts import parse_records_range
from sake_lens.evaluate.methods import fitting_paraphrases
from sake_lens.evaluate.suite import SuiteConfig, build_probes
from sake_lens.gate import GateConfig, ScopeRouter, fit_scope
from sake_lens.gate.embedder import default_embedder

IN_SCOPE = ("edit", "paraphrase", "doubt", "long_context")
LOCALITY = ("relation", "neighbourhood", "text", "passage")


class _Fact:
    """What a gate reads of an edit: id, request, paraphrases and site."""

    def __init__(self, record: Any, paraphrases: list[str]):
        from types import SimpleNamespace

        from sake_lens.steer.edit import EditConfig

        self.id = f"fact-{record.case_id}"
        self.request = record.request
        self.prompts = SimpleNamespace(paraphrases=paraphrases)
        self.site = SimpleNamespace(hook=EditConfig().site)


class _Tok:
    tokenizer = object()


def rates(hits: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for kind, v in hits.items():
        lo, hi = wilson(sum(v), len(v))
        out[kind] = {"rate": 100 * sum(v) / len(v), "n": len(v), "ci": [lo, hi]}
    return out


def routing_cost(model: Any, router: ScopeRouter, texts: list[str], reps: int) -> dict[str, float]:
    """Median seconds of routing ``texts`` (fresh embeddings) and of the unedited forward
    (one generated token: the prompt's forward pass)."""
    from sake_lens.steer.generation import generate

    embedder = router.embedder
    route_s, forward_s = [], []
    for _ in range(reps):
        embedder._cache.clear()  # type: ignore[union-attr]
        start = time.perf_counter()
        router.route_texts(texts)
        route_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        generate(model, texts, max_new_tokens=1)
        forward_s.append(time.perf_counter() - start)
    return {
        "route_s": median(route_s),
        "forward_s": median(forward_s),
        "overhead": median(route_s) / median(forward_s),
    }


def figure(curve: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    ns = [c["n_edits"] for c in curve]
    for kind in (*IN_SCOPE, *LOCALITY):
        ys = [c["routes"].get(kind, {}).get("rate") for c in curve]
        if all(y is None for y in ys):
            continue
        lo = [c["routes"][kind]["ci"][0] for c in curve]
        hi = [c["routes"][kind]["ci"][1] for c in curve]
        fig.add_scatter(
            x=ns,
            y=ys,
            mode="lines+markers",
            name=f"{kind} ({'own edit' if kind in IN_SCOPE else 'any edit'})",
            error_y=error_bars(ys, lo, hi),
        )
    fig.update_layout(
        xaxis={"type": "log", "title": "edits active at once", "tickvals": ns},
        yaxis={"title": "% of probes routed", "range": [-2, 102]},
        height=480,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default=dev_data(),
        help="default: $SAKE_LENS_DATA or benchmarks/data/counterfact-dev.json",
    )
    p.add_argument("--edits", default="0:1000", help="records whose edits are served (dev)")
    p.add_argument("--locality", default="2000:2200", help="held-out records for locality")
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 10, 100, 1000])
    p.add_argument("--measured", type=int, default=100, help="edits whose in-scope probes count")
    p.add_argument("--n-paraphrases", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="prompts per routing-cost batch")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write OUT.md and OUT.json")
    p.add_argument("--docs", help="write this docs page with the figure and the table")
    args = p.parse_args()

    from sake_lens import load_model

    model = load_model()
    edits = load_records(args.data, records=parse_records_range(args.edits)).records
    held = load_records(args.data, records=parse_records_range(args.locality)).records
    if max(args.sizes) > len(edits):
        raise SystemExit(f"--sizes up to {max(args.sizes)} but --edits holds {len(edits)}")
    suite = SuiteConfig()
    gate = GateConfig()
    embedder = default_embedder()
    start = time.perf_counter()
    facts = [_Fact(r, fitting_paraphrases(r, args.n_paraphrases, args.seed)) for r in edits]
    scopes = [fit_scope(f, gate, embedder=embedder) for f in facts]
    fit_s = time.perf_counter() - start
    own = [
        (i, q)
        for i, r in enumerate(edits[: args.measured])
        for q in build_probes(r, suite, seed=args.seed, tokenizer=model.tokenizer)
        if q.kind in IN_SCOPE
    ]
    loc = [
        q
        for r in held
        for q in build_probes(r, suite, seed=args.seed, tokenizer=model.tokenizer)
        if q.kind in LOCALITY
    ]
    half = args.batch // 2
    loc_texts = [q.prompt for q in loc[:: max(1, len(loc) // half)]][:half]

    curve = []
    for n in sorted(args.sizes):
        router = ScopeRouter(facts[:n], scopes[:n], model=_Tok(), embedder=embedder)
        hits: dict[str, list[int]] = defaultdict(list)
        mine = [(i, q) for i, q in own if i < n]
        routes = router.route_texts([q.prompt for _, q in mine]).tolist() if mine else []
        for (i, q), r in zip(mine, routes):
            hits[q.kind].append(int(r == i))
        for q, r in zip(loc, router.route_texts([q.prompt for q in loc]).tolist()):
            hits[q.kind].append(int(r >= 0))
        # Half the batch names served subjects (their gates are scored), half does not; no
        # long-context prompt, whose long forward would make routing look cheap.
        short = [q.prompt for _, q in mine if q.kind != "long_context"]
        own_texts = short[:: max(1, len(short) // half)][:half]
        cost_texts = own_texts + loc_texts
        cost = routing_cost(model, router, cost_texts, args.reps)
        curve.append({"n_edits": n, "routes": rates(hits), "cost": cost})
        print(f"{n} edits: {cost}", flush=True)

    kinds = [k for k in (*IN_SCOPE, *LOCALITY) if any(k in c["routes"] for c in curve)]
    rows = []
    for c in curve:
        cells = []
        for k in kinds:
            r = c["routes"].get(k)
            cells.append(
                "-" if r is None else f"{r['rate']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}]"
            )
        rows.append(
            [
                c["n_edits"],
                *cells,
                f"{1000 * c['cost']['route_s'] / args.batch:.1f}",
                f"{100 * c['cost']['overhead']:.0f} %",
            ]
        )
    n_row = ["n (at the largest size)", *(str(curve[-1]["routes"][k]["n"]) for k in kinds), "", ""]
    head = [f"{k} ({'own' if k in IN_SCOPE else 'any'}) %" for k in kinds]
    table = markdown_table(["edits", *head, "route ms / prompt", "route / forward"], [*rows, n_row])
    caption = (
        f"Edits from records {args.edits} (in-scope probes of the first {args.measured}), "
        f"locality probes from held-out records {args.locality} of {Path(args.data).name}; "
        f"default gate, {args.n_paraphrases} paraphrases per edit; gates fitted in "
        f"{fit_s:.0f} s. Rate % [95 % Wilson interval]. Routing cost: a batch of "
        f"{args.batch} prompts (half in-scope probes of served edits, half held-out), "
        f"median of {args.reps}, beside the unedited forward of the same batch."
    )
    print(caption + "\n\n" + table)
    payload = {
        "benchmark": "gate_scale",
        "edits": args.edits,
        "locality": args.locality,
        "fit_s": fit_s,
        "curve": curve,
        "env": environment("cpu"),
    }
    if args.out:
        Path(args.out + ".md").write_text(caption + "\n\n" + table + "\n")
        Path(args.out + ".json").write_text(json.dumps(payload, indent=1) + "\n")
    if args.docs:
        html = figure(curve).to_html(full_html=False, include_plotlyjs=False, div_id="gate-scale")
        Path(args.docs).write_text(
            f"---\ntitle: Routing at scale\nplotly: true\n{front_matter_lines()}---\n\n"
            "# Routing at scale: 1 to 1,000 edits\n\n"
            "How often a probe reaches its own edit (in scope) or any edit (locality) as the "
            "number of edits served together grows, with the default fact gate "
            "([Scope gates](../concepts/gates.md)). Generated by `benchmarks/gate_scale.py`.\n\n"
            f'<div class="sake-lens-figure">{html}</div>\n\n{caption}\n\n{table}\n'
        )


if __name__ == "__main__":
    main()
