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

The run also prints what bounds the speed-up (``--no-roofline`` skips it): this core's fp32
matrix-multiply peak (a ``(1280, 576) @ (576, 1536)`` product, the shape of a batched MLP
projection), and the FLOP rate each side reaches — the model's matmul FLOPs per token (blocks
for every token; the unembedding for every token on the reference's HF path, for the last
position only in sake_lens) times the prompts' token counts, over the measured CPU seconds. The
largest speed-up batching can give is then peak / (the reference's rate).

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


def block_flops_per_token(model: Any) -> tuple[float, float]:
    """(matmul FLOPs per token in the blocks, in the unembedding), from the HF weights."""
    hf = model.original_model
    body = sum(
        m.weight.numel()
        for name, m in hf.model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}"
    )
    return 2.0 * body, 2.0 * hf.lm_head.weight.numel()


def matmul_peak_gflops(repeats: int = 20) -> float:
    """Best fp32 GFLOP/s of a batched-MLP-shaped matrix product on this CPU."""
    a, b = torch.randn(1280, 576), torch.randn(576, 1536)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _, wall, _ = timed(lambda: a @ b)
        best = min(best, wall)
    return 2 * 1280 * 576 * 1536 / best / 1e9


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
    p.add_argument("--no-roofline", action="store_true")
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
    if not args.no_roofline and args.device == "cpu":
        tok = model.tokenizer
        n_tokens = sum(
            len(tok.encode(q, add_special_tokens=False)) for q in sets.source + sets.target
        )
        body, unembed = block_flops_per_token(model)
        peak = matmul_peak_gflops()
        sake_gflop = (n_tokens * body + n_prompts * unembed) / 1e9
        roof = [["fp32 matmul peak, one (1280x576)@(576x1536) product", f"{peak:.1f}", "", ""]]
        roof.append(
            [
                "sake_lens fit_edit",
                f"{sake_gflop / median(sk_cpu):.1f}",
                f"{100 * sake_gflop / median(sk_cpu) / peak:.0f}%",
                f"{sake_gflop:.0f}",
            ]
        )
        if ref_rows:
            ref_gflop = n_tokens * (body + unembed) / 1e9
            ref_rate = ref_gflop / median([r["forward_cpu_s"] for r in ref_rows])
            roof.append(
                [
                    "reference forwards",
                    f"{ref_rate:.1f}",
                    f"{100 * ref_rate / peak:.0f}%",
                    f"{ref_gflop:.0f}",
                ]
            )
            roof.append(
                [
                    "largest speed-up at the peak (peak / reference rate)",
                    f"{peak / ref_rate:.1f}x",
                    "",
                    "",
                ]
            )
            result["max_speedup_at_peak"] = peak / ref_rate
        print()
        print(markdown_table(["what", "GFLOP/s (CPU time)", "of peak", "GFLOP"], roof))
        result.update(tokens=n_tokens, matmul_peak_gflops=peak, sake_gflop=sake_gflop)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
