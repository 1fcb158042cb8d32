"""Which gate routes the evaluation's probes best, with every edit of a record range in one
router (the harness's ``all`` mode), without fitting a single map.

For each record, the edit's in-scope prompts are exactly the paraphrases ``sake-lens eval``
fits it with (:func:`~sake_lens.prompts.leakage.fitting_prompts`, 20 per record by default), and its gate
is calibrated as :class:`~sake_lens.registry.EditBook` does. Then every probe of the evaluation
suite (:func:`~sake_lens.evaluate.suite.build_probes`) is routed by text over all gates at once,
and the table reports, per probe kind, how often the probe reaches its **own** edit (in-scope
kinds: edit, paraphrase, doubt, long context, implication; CounterFact's generation prompts
for reference) or **any** edit (out-of-scope kinds: the subject through another relation,
neighbourhood prompts, unrelated text, passages naming the subject), with n and a 95 % Wilson
interval. A gate is written ``fact:FPR[:DISTANCE_FPR]`` (the fact gate) or ``embedding:VIEW:FPR`` (the
sentence-embedding gate with a text view). Sentence embeddings only: no model forward pass.
Choose on dev records 0-1999, report on 2000 and up::

    .venv/bin/python benchmarks/gate_kinds.py --data dev.json \\
        --records 2000:2400 --out benchmarks/results/gate-kinds-2000-2400
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import dev_data, environment, markdown_table

from sake_lens.analysis.provenance import front_matter_lines
from sake_lens.evaluate.data import load_records
from sake_lens.evaluate.known_facts import parse_records_range
from sake_lens.evaluate.methods import fact_router
from sake_lens.evaluate.suite import SuiteConfig, build_probes, verified_table
from sake_lens.gate import FeatureCache, GateConfig
from sake_lens.gate.embedder import default_embedder

IN_SCOPE = ("edit", "paraphrase", "doubt", "long_context", "implication", "generation_prompt")
OUT_OF_SCOPE = ("relation", "neighbourhood", "text", "passage")
DEFAULT_GATES = ("fact:0.01", "fact:0.02", "fact:0.05", "fact:0.1", "embedding:quotes:0.1")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of ``k`` successes in ``n`` (percent)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


def error_bars(values: list[float], lows: list[float], highs: list[float]) -> dict[str, Any]:
    """A plotly ``error_x``/``error_y`` from intervals around ``values``."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [h - v for h, v in zip(highs, values)],
        "arrayminus": [v - low for low, v in zip(lows, values)],
    }


def parse_gate(spec: str) -> GateConfig:
    parts = spec.split(":")
    if parts[0] == "fact" and len(parts) in (2, 3):
        extra = {"distance_fpr": float(parts[2])} if len(parts) == 3 else {}
        return GateConfig(kind="fact", fpr=float(parts[1]), **extra)
    if parts[0] == "embedding" and len(parts) == 3:
        return GateConfig(kind="embedding", text=parts[1], fpr=float(parts[2]))
    raise SystemExit(f"bad gate {spec!r}: write fact:FPR[:DISTANCE_FPR] or embedding:VIEW:FPR")


def route_all(
    records: list[Any],
    probes: list[list[Any]],
    gate: GateConfig,
    n_paraphrases: int,
    seed: int,
    features: FeatureCache,
) -> dict[str, dict[str, Any]]:
    router = fact_router(records, gate, n_paraphrases=n_paraphrases, seed=seed, features=features)
    texts = [p.prompt for ps in probes for p in ps]
    owners = [i for i, ps in enumerate(probes) for _ in ps]
    kinds = [p.kind for ps in probes for p in ps]
    routes = router.route_texts(texts).tolist()
    hit: dict[str, list[int]] = defaultdict(list)
    for kind, owner, route in zip(kinds, owners, routes):
        hit[kind].append(int(route == owner) if kind in IN_SCOPE else int(route >= 0))
    out = {}
    for k, v in hit.items():
        lo, hi = wilson(sum(v), len(v))
        out[k] = {"rate": 100 * sum(v) / len(v), "n": len(v), "ci": [lo, hi]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default=dev_data(),
        help="default: $SAKE_LENS_DATA or benchmarks/data/counterfact-dev.json",
    )
    p.add_argument("--records", default="0:400", help="start:stop positions in the data file")
    p.add_argument(
        "--n-paraphrases", type=int, default=None, help="per edit (default: as sake-lens eval)"
    )
    p.add_argument("--gates", nargs="+", default=list(DEFAULT_GATES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write OUT.md and OUT.json")
    p.add_argument("--docs", help="write this docs page: the Pareto front and the table")
    p.add_argument("--default", default="fact:0.1:0.05", help="the gate the docs page marks")
    args = p.parse_args()
    gates = [(spec, parse_gate(spec)) for spec in args.gates]
    if args.n_paraphrases is None:
        from sake_lens.evaluate.methods import _default_n_paraphrases

        args.n_paraphrases = _default_n_paraphrases()

    from sake_lens import load_model

    model = load_model()
    records = load_records(args.data, records=parse_records_range(args.records)).records
    suite = SuiteConfig()
    table = verified_table(model, records)
    probes = [
        build_probes(r, suite, seed=args.seed, tokenizer=model.tokenizer, table=table)
        for r in records
    ]
    features = FeatureCache(embedder=default_embedder())

    kinds = [k for k in (*IN_SCOPE, *OUT_OF_SCOPE) if any(q.kind == k for ps in probes for q in ps)]
    rows, results = [], []
    for spec, gate in gates:
        start = time.perf_counter()
        res = route_all(records, probes, gate, args.n_paraphrases, args.seed, features)
        results.append({"gate": spec, "config": gate.to_dict(), "routes": res})
        cells = [
            f"{res[k]['rate']:.1f} [{res[k]['ci'][0]:.1f}, {res[k]['ci'][1]:.1f}]" for k in kinds
        ]
        rows.append([spec, *cells, round(time.perf_counter() - start)])
    head = [f"{k} ({'own' if k in IN_SCOPE else 'any'}) %" for k in kinds]
    n_row = ["n", *(str(results[0]["routes"][k]["n"]) for k in kinds), ""]
    text = (
        f"Gate kinds on records {args.records} of {Path(args.data).name}, every edit in one "
        f"router, {args.n_paraphrases} paraphrases per edit; rate % [95 % Wilson interval]."
        "\n\n" + markdown_table(["gate", *head, "s"], [n_row, *rows])
    )
    print(text)
    payload = {
        "benchmark": "gate_kinds",
        "records": args.records,
        "results": results,
        "env": environment("cpu"),
    }
    if args.out:
        Path(args.out + ".md").write_text(text + "\n")
        Path(args.out + ".json").write_text(json.dumps(payload, indent=1) + "\n")
    if args.docs:
        html = pareto(results, args.default).to_html(
            full_html=False, include_plotlyjs=False, div_id="gate-pareto"
        )
        Path(args.docs).write_text(
            "---\ntitle: Gates, locality against generalisation\nplotly: true\n"
            f"{front_matter_lines()}---\n\n"
            "# Gates: locality against generalisation\n\n"
            "Each point is a gate configuration: how often a prompt about an edited subject "
            "through *another* relation reaches an edit (x, lower is better) against how often "
            "a CounterFact paraphrase reaches its own edit (y, higher is better); bars are 95 % "
            "Wilson intervals, and hovering shows the other kinds. The ring marks the default "
            f"(`{args.default}`). Generated by `benchmarks/gate_kinds.py --records "
            f"{args.records} --docs` ([Scope gates](../concepts/gates.md) explains the "
            f'gates).\n\n<div class="sake-lens-figure">{html}</div>\n\n{text}\n'
        )


def pareto(results: list[dict[str, Any]], default: str) -> Any:
    """Paraphrase TPR against same-subject/other-relation acceptance, one point per gate."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for family in ("fact", "embedding"):
        pts = [r for r in results if r["gate"].startswith(family)]
        if not pts:
            continue
        x = [r["routes"]["relation"]["rate"] for r in pts]
        y = [r["routes"]["paraphrase"]["rate"] for r in pts]
        hover = [
            "<br>".join(
                [r["gate"]]
                + [f"{k}: {v['rate']:.1f} % (n={v['n']})" for k, v in r["routes"].items()]
            )
            for r in pts
        ]
        fig.add_scatter(
            x=x,
            y=y,
            mode="markers+text",
            text=[r["gate"] for r in pts],
            textposition="top center",
            hovertext=hover,
            hoverinfo="text",
            name=f"{family} gate",
            error_x=error_bars(x, *zip(*(r["routes"]["relation"]["ci"] for r in pts))),
            error_y=error_bars(y, *zip(*(r["routes"]["paraphrase"]["ci"] for r in pts))),
        )
    chosen = [r for r in results if r["gate"] == default]
    if chosen:
        fig.add_scatter(
            x=[chosen[0]["routes"]["relation"]["rate"]],
            y=[chosen[0]["routes"]["paraphrase"]["rate"]],
            mode="markers",
            marker={"size": 18, "symbol": "circle-open", "line": {"width": 2}},
            name="default",
            hoverinfo="skip",
        )
    fig.update_layout(
        xaxis={"title": "same subject, other relation: routed to an edit (%)"},
        yaxis={"title": "paraphrases routed to their edit (%)"},
        height=520,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


if __name__ == "__main__":
    main()
