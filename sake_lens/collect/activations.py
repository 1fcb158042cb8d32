"""Batched activation collection at steering sites.

Prompts are sorted by length and batched with left padding (so each row's last token is the
last column), one forward pass per batch reads every requested site at once, and the forward
stops after the deepest site's block when no predictions are needed. A batch is bounded by
tokens as well as rows (at most ``max_batch_tokens`` padded tokens), so long prompts go a few at
a time while short ones still share one pass. Results are float64 on
the CPU, in the prompts' original order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import CollectionError
from ..model.sites import Site, keep_last_positions, resolve_site
from ..model.tokens import bos_convention, check_prompts, tokenize_batch

__all__ = ["Activations", "collect_activations"]

log = logging.getLogger(__name__)


@dataclass
class Activations:
    """Activations at the last token of each prompt, per site.

    Attributes:
        prompts: the prompts, in the order given.
        acts: hook name -> ``(n, d)`` float64 tensor on the CPU.
        predictions: ``(n,)`` greedy next-token ids (when ``predict=True``).
        top_logprobs: ``(n, k)`` log-probabilities of the top-k next tokens (when predicting).
        top_ids: ``(n, k)`` their ids.
        prepend_bos: the BOS convention used.
    """

    prompts: list[str]
    acts: dict[str, Float[Tensor, "n d"]]
    prepend_bos: bool
    predictions: Int[Tensor, " n"] | None = None
    top_ids: Int[Tensor, "n k"] | None = None
    top_logprobs: Float[Tensor, "n k"] | None = None
    logits_last: Float[Tensor, "n vocab"] | None = field(default=None, repr=False)

    def __getitem__(self, hook: str) -> Float[Tensor, "n d"]:
        return self.acts[hook]


def _token_batches(
    order: Sequence[int], lengths: Sequence[int], batch_size: int, max_tokens: int
) -> list[list[int]]:
    """Consecutive groups of ``order`` (sorted by length) with at most ``batch_size`` rows and
    ``rows x longest`` at most ``max_tokens`` (a longer prompt goes alone)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (len(current) >= batch_size or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _stop_layer(sites: Sequence[Site], n_layers: int) -> int | None:
    layers = [s.layer for s in sites]
    if any(layer is None for layer in layers):
        return None
    deepest = max(layer for layer in layers if layer is not None)
    return deepest + 1 if deepest + 1 < n_layers else None


@torch.no_grad()
def collect_activations(
    model: Any,
    prompts: Sequence[str] | str,
    sites: Sequence[Site | str] | Site | str,
    *,
    batch_size: int = 32,
    max_batch_tokens: int = 8192,
    prepend_bos: bool | None = None,
    predict: bool = False,
    keep_logits: bool = False,
    top_k: int = 5,
    progress: bool | None = None,
    extra_hooks: Sequence[tuple[str, Any]] = (),
) -> Activations:
    """Collect activations at the last token of every prompt, for every site, in one pass.

    Args:
        model: a TransformerLens model.
        prompts: the prompts (subject filled in).
        sites: hook names or :class:`Site` objects (validated against the model).
        batch_size: prompts per forward pass.
        max_batch_tokens: padded tokens per forward pass (rows x longest prompt); a longer
            prompt goes alone.
        prepend_bos: BOS convention (default: :func:`bos_convention` of the model).
        predict: also return the greedy next token and the top-k log-probabilities.
        keep_logits: also keep the full last-position logits (``(n, vocab)``, float32).
        progress: show a progress bar (default: only for more than 4 batches).
        extra_hooks: more ``(name, fn)`` hooks active during collection (e.g. steering).

    Returns:
        :class:`Activations` with float64 CPU tensors in the prompts' order.
    """
    prompts = check_prompts(prompts)
    if isinstance(sites, (str, Site)):
        sites = [sites]
    resolved = [resolve_site(model, s, check_steers=False) for s in sites]
    hooks = list(dict.fromkeys(s.hook for s in resolved))
    if batch_size < 1 or max_batch_tokens < 1:
        raise CollectionError(
            f"batch_size and max_batch_tokens must be >= 1, got {batch_size} and "
            f"{max_batch_tokens}."
        )
    if prepend_bos is None:
        prepend_bos = bos_convention(model)
    predict = predict or keep_logits
    stop = None if (predict or extra_hooks) else _stop_layer(resolved, int(model.cfg.n_layers))

    # Sort by token length so each batch pads as little as possible.
    lengths = [len(model.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    n = len(prompts)
    out: dict[str, Tensor] = {h: torch.empty(0) for h in hooks}
    pred = torch.empty(n, dtype=torch.long) if predict else None
    top_ids = torch.empty(n, top_k, dtype=torch.long) if predict else None
    top_lp = torch.empty(n, top_k, dtype=torch.float64) if predict else None
    logits_all = None
    captured: dict[str, Tensor] = {}

    def make_capture(name: str) -> Any:
        def capture(act: Tensor, hook: Any) -> None:
            captured[name] = act[:, -1, :].detach()  # left padding: last column is last token

        return capture

    fwd_hooks = [*extra_hooks, *((h, make_capture(h)) for h in hooks)]
    if stop is None:
        # Only the last position is read: cut the stream to it before the unembedding.
        fwd_hooks += keep_last_positions(model)
    batches = _token_batches(order, lengths, batch_size, max_batch_tokens)
    show = progress if progress is not None else len(batches) > 4
    for idx in tqdm(batches, desc="collecting activations", disable=not show, leave=False):
        batch = tokenize_batch(model, [prompts[i] for i in idx], prepend_bos=prepend_bos)
        captured.clear()
        kwargs: dict[str, Any] = {"attention_mask": batch.attention_mask}
        if stop is not None:
            kwargs["stop_at_layer"] = stop
            kwargs["return_type"] = None
        with model.hooks(fwd_hooks=fwd_hooks):
            logits = model(batch.tokens, **kwargs)
        rows = torch.tensor(idx)
        for h in hooks:
            act = captured[h].to("cpu", torch.float64)
            if not torch.isfinite(act).all():
                bad = [prompts[idx[j]] for j in torch.nonzero(~torch.isfinite(act).all(1))[:, 0]]
                raise CollectionError(
                    f"Non-finite activations at {h!r} for prompts {bad[:3]!r}; the model "
                    "overflowed (try dtype=torch.float32) or a hook wrote NaN."
                )
            if out[h].numel() == 0:
                out[h] = torch.empty(n, act.shape[-1], dtype=torch.float64)
            out[h][rows] = act
        if predict:
            last = logits[:, -1, :].float()
            logp = torch.log_softmax(last, dim=-1)
            vals, ids = logp.topk(top_k, dim=-1)
            assert pred is not None and top_ids is not None and top_lp is not None
            pred[rows] = ids[:, 0].cpu()
            top_ids[rows] = ids.cpu()
            top_lp[rows] = vals.to("cpu", torch.float64)
            if keep_logits:
                if logits_all is None:
                    logits_all = torch.empty(n, last.shape[-1], dtype=torch.float32)
                logits_all[rows] = last.cpu()
    return Activations(prompts, out, prepend_bos, pred, top_ids, top_lp, logits_all)
