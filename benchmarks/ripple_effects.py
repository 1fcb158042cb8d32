"""Where implication prompts go under each map, and the ripple suite's table of results.

    python benchmarks/ripple_effects.py --suite benchmarks/data/ripple-suite.json --split test \\
        --n 12 --runs benchmarks/results/ripple-test/*.json.gz --docs docs/analyses/ripple-effects.md

(``--out FILE`` keeps the readings, ``--readings FILE`` redraws the page from them.)

For the first ``--n`` edits of the split, each compositionality-I probe ("The capital city of
the country that the Eiffel Tower is in is") is read at the last token three ways, for each map
kind (mean shift, diagonal, Gaussian): unedited, with the edit alone behind its gate, and with
the edit and its implied edits. The figure places each reading by two logits of the next token:
the implied answer's first token (Rome) against the new object's (Italy). A single map moves a
two-hop prompt towards the new object; an implied edit moves it to the implied answer. The
table is the suite's families for every run in ``--runs`` (``sake-lens eval`` result files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from eval_table import load as load_run

from sake_lens.analysis.provenance import front_matter_lines
from sake_lens.evaluate.data import load_records
from sake_lens.evaluate.metrics import METRICS

MAPS = ("mean-shift", "diagonal", "gaussian")
TREATMENTS = ("unedited", "edit alone", "edit + implied edits")
#: The table's rows: (metric, label).
ROWS: tuple[tuple[str, str], ...] = (
    ("ripple_compositionality_1", "compositionality I (new country's attributes)"),
    ("ripple_compositionality_2", "compositionality II (through a description)"),
    ("ripple_subject_aliasing", "subject aliasing"),
    ("ripple_relation_specificity", "relation specificity (checked facts)"),
    ("locality_relation", "relation specificity (other relations, vs unedited)"),
    ("ripple_object_locality", "object-side locality"),
    ("efficacy", "efficacy (edit prompt)"),
    ("doubt_1", "doubt 1"),
    ("gate_fpr_relation", "gate FPR, same subject other relations"),
)


def cell(agg: dict[str, Any] | None, probes: int | None = None) -> str:
    if not agg or agg.get("mean") is None:
        return "n/a"
    mean, lo, hi = (100 * agg[k] for k in ("mean", "ci_low", "ci_high"))
    n = f"{agg['n']}" + (f"; {probes} probes" if probes else "")
    if f"{lo:.1f}" == f"{hi:.1f}":
        return f"{mean:.1f} ({n})"
    return f"{mean:.1f} [{lo:.1f}, {hi:.1f}] ({n})"


def label(run: dict[str, Any]) -> str:
    method = run["config"]["method"]
    over = run["config"].get("overrides") or {}
    kind = (over.get("edit") or {}).get("map_kind")
    parts = [method + (f" ({kind} map)" if kind else "")]
    if over.get("implications"):
        parts.append("+ implied edits")
    return " ".join(parts)


def table(runs: list[dict[str, Any]]) -> str:
    names = [label(r) for r in runs]
    lines = ["| family | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric, text in ROWS:
        cells = []
        for r in runs:
            family = metric.removeprefix("ripple_")
            probes = r["breakdowns"].get("ripple_probes", {}).get(family, {}).get("probes")
            cells.append(cell(r["aggregates"].get(metric), probes))
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def next_token_logits(model: Any, prompts: list[str]) -> torch.Tensor:
    """``(n, vocab)`` logits after each prompt (one prompt per pass: no padding)."""
    rows = []
    with torch.no_grad():
        for p in prompts:
            tokens = model.to_tokens(p, prepend_bos=False)
            rows.append(model(tokens)[0, -1].double())
    return torch.stack(rows)


def readings(model: Any, records: list[Any]) -> list[dict[str, Any]]:
    """Per map kind, treatment and compositionality-I probe: the two logits."""
    from sake_lens.model.tokens import object_first_token
    from sake_lens.registry.book import EditBook
    from sake_lens.steer.edit import EditConfig
    from sake_lens.steer.implied import fit_implied_edits
    from sake_lens.steer.workflow import make_edit

    tok = model.tokenizer
    out: list[dict[str, Any]] = []
    for record in records:
        probes = [p for p in record.ripple if p.family == "compositionality_1" and not p.ambiguous]
        if not probes:
            continue
        prompts = [p.prompt for p in probes]
        new_id = tok.encode(
            " " + object_first_token(tok, record.request.new), add_special_tokens=False
        )[0]
        answer_ids = [tok.encode(" " + p.answer, add_special_tokens=False)[0] for p in probes]
        unedited = next_token_logits(model, prompts)
        for kind in MAPS:
            config = dataclasses.replace(EditConfig(), map_kind=kind)
            edit = make_edit(model, record.request, config=config)
            implied = fit_implied_edits(model, edit)
            alone, both = EditBook(model=model), EditBook(model=model)
            alone.add(edit)
            both.add(dataclasses.replace(edit, implied=implied))
            with alone.steer(model):
                single = next_token_logits(model, prompts)
            with both.steer(model):
                full = next_token_logits(model, prompts)
            for treatment, logits in zip(TREATMENTS, (unedited, single, full)):
                for i, p in enumerate(probes):
                    row = logits[i]
                    out.append(
                        {
                            "map": kind,
                            "treatment": treatment,
                            "subject": record.request.subject,
                            "prompt": p.prompt,
                            "new": record.request.new,
                            "answer": p.answer,
                            "answer_logit": float(row[answer_ids[i]]),
                            "new_logit": float(row[new_id]),
                            "greedy": tok.decode([int(row.argmax())]),
                        }
                    )
    return out


def figure(points: list[dict[str, Any]]) -> Any:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(MAPS), subplot_titles=MAPS, shared_yaxes=True)
    colours = {"unedited": "#9e9e9e", "edit alone": "#ef553b", "edit + implied edits": "#00a087"}
    for col, kind in enumerate(MAPS, start=1):
        for treatment in TREATMENTS:
            pts = [p for p in points if p["map"] == kind and p["treatment"] == treatment]
            fig.add_scatter(
                x=[p["new_logit"] for p in pts],
                y=[p["answer_logit"] for p in pts],
                mode="markers",
                marker={"color": colours[treatment], "size": 7, "opacity": 0.8},
                name=treatment,
                legendgroup=treatment,
                showlegend=col == 1,
                hovertext=[
                    f"{p['prompt']}<br>new object {p['new']}, implied {p['answer']}"
                    f"<br>greedy {p['greedy']!r}"
                    for p in pts
                ],
                hoverinfo="text",
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="logit of the new object", row=1, col=col)
    fig.update_yaxes(title_text="logit of the implied answer", row=1, col=1)
    fig.update_layout(height=460, margin={"l": 60, "r": 20, "t": 40, "b": 50})
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return fig


def shares(points: list[dict[str, Any]]) -> str:
    """Per map and treatment: how often the greedy token starts the implied answer, and how
    often it starts the new object."""
    from sake_lens.model.tokens import starts_object

    lines = [
        "| map | treatment | implied answer % | new object % | n |",
        "|---|---|---|---|---|",
    ]
    for kind in MAPS:
        for treatment in TREATMENTS:
            pts = [p for p in points if p["map"] == kind and p["treatment"] == treatment]
            if not pts:
                continue
            implied = sum(starts_object(p["greedy"], p["answer"]) for p in pts) / len(pts)
            new = sum(starts_object(p["greedy"], p["new"]) for p in pts) / len(pts)
            lines.append(
                f"| {kind} | {treatment} | {100 * implied:.1f} | {100 * new:.1f} | {len(pts)} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", required=True, help="a ripple suite (sake-lens ripple-suite)")
    p.add_argument("--split", default="test", choices=("dev", "test"))
    p.add_argument("--n", type=int, default=12, help="edits read for the figure")
    p.add_argument("--runs", nargs="*", type=Path, default=[], help="eval result files")
    p.add_argument("--docs", help="write this docs page")
    p.add_argument("--out", help="also write the readings as JSON")
    p.add_argument("--readings", type=Path, help="use readings written by --out (no model)")
    args = p.parse_args()
    assert set(METRICS) >= {m for m, _ in ROWS}
    runs = [load_run(f) for f in args.runs]
    records = load_records(args.suite, split=args.split, n=args.n).records

    if args.readings:
        points = json.loads(args.readings.read_text())
    else:
        import sake_lens as sl

        points = readings(sl.load_model(), records)
    summary = shares(points)
    print(summary)
    if args.out:
        Path(args.out).write_text(json.dumps(points, indent=1) + "\n")
    results = table(runs) if runs else ""
    if results:
        print(results)
    if args.docs:
        html = figure(points).to_html(full_html=False, include_plotlyjs=False, div_id="ripple-maps")
        Path(args.docs).write_text(
            PAGE.format(
                stamp=front_matter_lines(),
                n=len(records),
                split=args.split,
                suite=Path(args.suite).name,
                figure=html,
                shares=summary,
                results=results,
                n_records=len(runs[0]["records"]) if runs else 0,
            )
        )


PAGE = """---
title: Ripple effects
plotly: true
{stamp}---

# Ripple effects: where implication prompts go under each map

After "the Eiffel Tower is located in Italy", "The capital city of the country that the Eiffel
Tower is in is" should be answered *Rome*. Each point below is one such compositionality-I
probe of the first {n} edits of the {split} half of `{suite}`, read at the prompt's last token
after the final layer: the logit of the new object's first token (x) against that of the
implied answer's first token (y), unedited (grey), with the edit alone behind its gate (red) and
with the edit and its implied edits (green), for each map kind. Generated by
`benchmarks/ripple_effects.py` ([Implications](../concepts/implications.md) explains implied
edits).

<div class="sake-lens-figure">{figure}</div>

Greedy next token on those probes:

{shares}

A single map — whatever its kind — carries a two-hop prompt towards the new object: the edit's
gate accepts it (it names the subject and the edited relation) and the map cannot tell it from
the edit prompt. The implied edits move the same prompts to the implied answer instead.

## The suite, every edit active at once

Each cell is the mean over records [95 % bootstrap interval by record] (records; probes scored),
in percent, on the first {n_records} edits of the suite's test half (in the suite's hashed
order, a random sample of it; nothing was tuned on them), every edit and implied edit active at
once. The commands are in `benchmarks/ripple_eval.sh`; the result files in
`benchmarks/results/ripple-test/`.

{results}

**The map kind does not matter here.** With implied edits, the mean shift, the diagonal map and
the Gaussian map reach the same compositionality I within their intervals, and the figure shows
why: at the final site with the default regulariser (`reg=100`) the diagonal and Gaussian maps
are close to a mean shift. What serves different answers is a map *per implication*, not a
richer map per edit. Compositionality II and subject aliasing stay at 0: a fact gate keys on the
subject's name, so a description or another name reaches no edit.
"""


if __name__ == "__main__":
    main()
