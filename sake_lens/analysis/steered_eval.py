"""Steered evaluation of many edits at once, reusing the unsteered computation.

An edit steers only the prompt's last token, and causal attention leaves every earlier
position as it was; so, ungated, each steered pass runs just that token on the KV cache of the
unsteered prefix (``"kv-cache"``, when :func:`~sake_lens.steer.generation.kv_cache_is_correct`
holds), or starts at the edited block from the unsteered residual stream
(``"start-at-layer"``). With a router (a scope gate may read earlier positions or the prompt
text) every pass is a full one (``"full"``). All three give the numbers of a full steered pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..model.sites import FINAL_SITE, keep_last_positions
from ..model.tokens import tokenize_batch
from ..steer.edit import Edit
from ..steer.hooks import Router, steered

__all__ = ["EVAL_PATHS", "Outcomes", "evaluate_edits", "last_position_only"]


def last_position_only(model: Any) -> list[tuple[str, Any]]:
    """Pass only the last position on to the unembedding: the sweep reads next-token logits
    only, and unembedding every position (49k x 576 per token) costs ~8 blocks of SmolLM2."""
    return keep_last_positions(model)


class Outcomes:
    """Per-prompt outcomes of one steered (or unsteered) evaluation."""

    def __init__(self, n: int):
        self.top = torch.empty(n, dtype=torch.long)
        self.lp_new = torch.empty(n, dtype=torch.float64)
        self.lp_old = torch.empty(n, dtype=torch.float64)
        self.kl = torch.zeros(n, dtype=torch.float64)

    def record(self, rows: Tensor, lp: Tensor, new: int, old: int, base: Tensor | None) -> None:
        self.top[rows] = lp.argmax(-1).cpu()
        self.lp_new[rows] = lp[:, new].double().cpu()
        self.lp_old[rows] = lp[:, old].double().cpu()
        if base is not None:  # KL(base || steered)
            self.kl[rows] = (base.exp() * (base - lp)).sum(-1).double().cpu()


#: How steered passes are computed (see the module docstring).
EVAL_PATHS = ("kv-cache", "start-at-layer", "full")


def _eval_path(model: Any, edits: list[Edit], fast: bool, gated: bool, min_len: int) -> str:
    if not fast or gated:  # a router may read earlier positions or the prompt text
        return "full"
    from ..steer.generation import kv_cache_is_correct

    if min_len >= 2 and getattr(model, "original_model", None) is not None:
        if kv_cache_is_correct(model):
            return "kv-cache"
    at_block = all(
        e.site.hook == FINAL_SITE or e.site.hook.endswith(".hook_resid_post") for e in edits
    )
    return "start-at-layer" if at_block else "full"


def evaluate_edits(
    model: Any,
    edits: list[Edit],
    prompts: list[str],
    new: int,
    old: int,
    *,
    batch_size: int,
    prepend_bos: bool,
    router_factory: Callable[[Edit], Router] | None,
    fast: bool,
    progress: bool | None,
) -> tuple[Outcomes, list[Outcomes], str]:
    from ..steer.generation import _forward, _new_cache

    n_layers = int(model.cfg.n_layers)
    lengths = [len(model.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    path = _eval_path(model, edits, fast, router_factory is not None, min(lengths))
    base = Outcomes(len(prompts))
    outs = [Outcomes(len(prompts)) for _ in edits]
    total = len(batches) * len(edits)
    show = progress if progress is not None else total > 40
    bar = tqdm(total=total, desc="steered evaluation", disable=not show, leave=False)
    resid: dict[int, Tensor] = {}  # layer -> the unsteered input of that block (this batch)

    def capture(layer: int) -> Any:
        def fn(act: Tensor, hook: Any) -> None:
            resid[layer] = act.detach().clone()

        return fn

    def start_of(edit: Edit) -> int:
        return edit.site.layer if edit.site.layer is not None else n_layers - 1

    hooks = []
    if path == "start-at-layer":
        hooks = [(f"blocks.{s}.hook_resid_pre", capture(s)) for s in sorted(map(start_of, edits))]
    last_only = last_position_only(model)
    for idx in batches:
        batch = tokenize_batch(model, [prompts[i] for i in idx], prepend_bos=prepend_bos)
        rows, tokens, mask = torch.tensor(idx), batch.tokens, batch.attention_mask
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # each row's own positions
        resid.clear()
        prefix = None
        with model.hooks(fwd_hooks=hooks + last_only):
            if path == "kv-cache":
                prefix = _new_cache(model)  # the unsteered prompt minus its last token
                _forward(model, tokens[:, :-1], mask[:, :-1], positions[:, :-1], prefix)
                logits = _forward(
                    model, tokens[:, -1:], mask, positions[:, -1:], copy.deepcopy(prefix)
                )
            else:
                logits = model(tokens, attention_mask=mask)
        base_lp = torch.log_softmax(logits[:, -1].float(), -1)
        base.record(rows, base_lp, new, old, None)
        for edit, out in zip(edits, outs):
            router = router_factory(edit) if router_factory is not None else None
            with steered(model, [edit], router=router), model.hooks(fwd_hooks=last_only):
                if path == "kv-cache":
                    logits = _forward(
                        model, tokens[:, -1:], mask, positions[:, -1:], copy.deepcopy(prefix)
                    )
                elif path == "start-at-layer":
                    start = start_of(edit)
                    logits = model(resid[start].clone(), start_at_layer=start, attention_mask=mask)
                else:
                    logits = model(tokens, attention_mask=mask)
            out.record(rows, torch.log_softmax(logits[:, -1].float(), -1), new, old, base_lp)
            bar.update()
    bar.close()
    return base, outs, path
