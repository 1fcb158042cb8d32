"""Benchmark: creating one edit from 100 paraphrases, sake_lens vs the paper's procedure.

Both sides use the same 300 prompts on the same model and machine, in one run, repeats
interleaved (sake_lens, reference, sake_lens, ...):

* 100 paraphrases of the Darrieux request from the relation template bank
  (``sake_lens.steer.workflow.default_paraphrases(request, 100)``);
* source: the 100 plain paraphrases plus their 100 forced versions; target: the 100
  paraphrases in the ``fact`` target context (validated: the model must predict the new object).

**sake_lens**: ``fit_edit`` end to end (``build_prompt_sets``, two batched, length-sorted
collections — the target one also predicts the next token — validation, ``GaussianMap`` fit).

**reference** (the paper's published code path): one prompt per forward pass through the HF
model (``model.original_model``) with ``output_hidden_states=True``, the last hidden state
(final normalised layer) at the last token, the greedy next token for target prompts, then
POT's ``ot.da.LinearTransport(reg=1e-2)`` fitted in float64 numpy.

Prints a markdown table and one JSON line. Run::

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/edit_creation.py \
        --device cpu --repeats 3

``--profile`` also writes the cProfile top-25 (cumulative) of one sake_lens run to stderr.
``--ref-prompts K`` times the reference's forward passes on an evenly spaced subset of K of the
300 prompts and scales the per-prompt time to 300 (labelled in the output); the POT fit always
uses all 300 activations.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
from typing import Any

import numpy as np
import torch
from _common import environment, markdown_table, median, timed

from sake_lens import EditRequest, load_model
from sake_lens.prompts.distributions import DistributionConfig, build_prompt_sets
from sake_lens.steer.edit import EditConfig, fit_edit
from sake_lens.steer.workflow import default_paraphrases

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")


def sake_config(batch_size: int) -> EditConfig:
    dist = DistributionConfig(target_templates=("fact",), include_edit_prompt=False)
    return EditConfig(distributions=dist, batch_size=batch_size)


@torch.no_grad()
def reference(
    model: Any,
    source: list[str],
    target: list[str],
    ref_prompts: int | None,
    fallback: tuple[np.ndarray, np.ndarray],
) -> dict:
    """The paper's path: one prompt per forward pass, then POT's LinearTransport in float64."""
    import ot

    hf = model.original_model
    tok = model.tokenizer
    device = next(hf.parameters()).device
    prompts = [(p, False) for p in source] + [(p, True) for p in target]
    if ref_prompts is not None and ref_prompts < len(prompts):
        step = len(prompts) / ref_prompts
        timed_idx = {int(i * step) for i in range(ref_prompts)}
    else:
        timed_idx = set(range(len(prompts)))

    def run(idx: set[int]) -> tuple[list[np.ndarray], list[int]]:
        acts, preds = [], []
        for i, (p, is_target) in enumerate(prompts):
            if i not in idx:
                continue
            enc = tok(p, return_tensors="pt", add_special_tokens=False).to(device)
            out = hf(**enc, output_hidden_states=True)
            acts.append(out.hidden_states[-1][0, -1].double().cpu().numpy())
            if is_target:
                preds.append(int(out.logits[0, -1].argmax()))
        return acts, preds

    (acts, _), fwd_wall, fwd_cpu = timed(lambda: run(timed_idx), str(device))
    scale = len(prompts) / len(timed_idx)
    if len(timed_idx) < len(prompts):
        # Subset timed: fit POT on sake_lens's activations of the same prompts (the same
        # final normalised states; only the fit's time is measured here).
        xs, xt = fallback
    else:
        xs = np.stack(acts[: len(source)])
        xt = np.stack(acts[len(source) :])

    def fit() -> Any:
        return ot.da.LinearTransport(reg=1e-2).fit(Xs=xs, Xt=xt)

    _, fit_wall, fit_cpu = timed(fit)
    return {
        "forward_wall_s": fwd_wall * scale,
        "forward_cpu_s": fwd_cpu * scale,
        "fit_wall_s": fit_wall,
        "fit_cpu_s": fit_cpu,
        "wall_s": fwd_wall * scale + fit_wall,
        "cpu_s": fwd_cpu * scale + fit_cpu,
        "timed_prompts": len(timed_idx),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=100, help="paraphrases")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ref-prompts", type=int, default=None, metavar="K")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args()

    model = load_model(device=args.device)
    paras = default_paraphrases(REQUEST, args.n)
    cfg = sake_config(args.batch_size)
    sets = build_prompt_sets(REQUEST, paras, cfg.distributions)
    n_prompts = len(sets.source) + len(sets.target)

    def sake() -> Any:
        return fit_edit(model, REQUEST, paras, config=cfg, progress=False, keep_activations=True)

    fit_edit(model, REQUEST, paras[:10], config=cfg, progress=False)  # warm-up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        sake()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        print(buf.getvalue(), file=sys.stderr)

    sk_wall, sk_cpu, ref_rows = [], [], []
    edit = None
    for _ in range(args.repeats):
        edit, w, c = timed(sake, args.device)
        sk_wall.append(w)
        sk_cpu.append(c)
        if not args.skip_reference:
            fallback = (edit.source_acts.numpy(), edit.target_acts.numpy())
            ref_rows.append(reference(model, sets.source, sets.target, args.ref_prompts, fallback))

    rows = [
        [
            "sake_lens fit_edit (batched)",
            median(sk_wall),
            1000 * median(sk_wall) / n_prompts,
            median(sk_cpu),
            "1.0",
        ]
    ]
    result: dict[str, Any] = {
        "benchmark": "edit_creation",
        "prompts": n_prompts,
        "paraphrases": len(paras),
        "purity": edit.purity if edit is not None else None,
        "sake_wall_s": sk_wall,
        "sake_cpu_s": sk_cpu,
    }
    if ref_rows:
        rw = median([r["wall_s"] for r in ref_rows])
        rc = median([r["cpu_s"] for r in ref_rows])
        rf = median([r["fit_wall_s"] for r in ref_rows])
        label = "reference (1 prompt/pass + POT)"
        if ref_rows[0]["timed_prompts"] < n_prompts:
            label += f" [forwards timed on {ref_rows[0]['timed_prompts']}, scaled]"
        rows.append([label, rw, 1000 * rw / n_prompts, rc, f"{rw / median(sk_wall):.2f}x"])
        rows.append(["  of which POT LinearTransport fit", rf, "", "", ""])
        result.update(
            reference=ref_rows,
            speedup_wall=rw / median(sk_wall),
            speedup_cpu=rc / median(sk_cpu),
        )
    result["env"] = environment(args.device)
    print(
        markdown_table(
            ["method", "wall s (median)", "ms/prompt", "CPU s (median)", "reference / this"],
            rows,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
