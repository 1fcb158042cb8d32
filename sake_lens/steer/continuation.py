"""Continuation maps: carry a multi-token new object through generation.

The edit's map steers the prompt's last position, so the *first* token of the new object comes
out; at the final site that writes nothing into the KV cache, and the next positions are the
unedited model reading " D" after "The company that makes the Viper is" — it may well go on
" Dexter" instead of " Dodge", or "poet" on "ically". A continuation map is the same transport,
one position later: for ``k = 1 .. K`` (``K`` tokens in the new object) the source distribution
is the edit's source prompts followed by the object's first ``k`` tokens, the target
distribution its target prompts followed by them, kept where the model then predicts object
token ``k + 1`` — or, after the whole object (``k = K``), where it ends the word. During
generation (``EditConfig.generation = "object"``) map ``k`` steers the position of the ``k``-th
generated token while the generated tokens are exactly the object's first ``k``: it acts only
while the model spells the new object, never after.

Both distributions come from one forward pass over ``prompt + object`` per prompt (causal
attention: the prompt's last position is the same as without the object), so the continuation
costs no extra pass over the edit's own collection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import CollectionError, SakeLensError
from ..model.sites import Site, keep_last_positions
from ..model.tokens import tokenize_batch
from ..transport import TransportMap

__all__ = [
    "object_token_ids",
    "collect_through_object",
    "fit_continuation",
    "continuation_rows",
    "ends_word",
]

log = logging.getLogger(__name__)


def object_token_ids(model: Any, obj: str) -> tuple[int, ...]:
    """The token ids of `` obj`` as the model writes it after a prompt (leading space)."""
    ids = model.tokenizer.encode(" " + obj.strip(), add_special_tokens=False)
    return tuple(int(i) for i in ids)


def ends_word(token_text: str) -> bool:
    """Whether a token after an object ends its word and goes on writing (a space or
    punctuation; not a special token such as end-of-text, which would stop generation)."""
    text = token_text.strip()
    special = text.startswith("<") and text.endswith(">") and len(text) > 2
    return bool(token_text) and not token_text[:1].isalnum() and not special


@torch.no_grad()
def collect_through_object(
    model: Any,
    prompts: Sequence[str],
    site: Site,
    object_ids: Sequence[int],
    *,
    batch_size: int = 32,
) -> tuple[Tensor, Tensor]:
    """Activations and greedy predictions at each prompt's last token and at every object token.

    Every prompt is followed by ``object_ids`` (token ids, so no merge across the boundary);
    position ``k`` of the result holds the state after the object's first ``k`` tokens
    (``k = 0``: the prompt's last token).

    Returns:
        ``(n, K + 1, d)`` float64 CPU activations at ``site`` and ``(n, K + 1)`` greedy
        next-token ids.
    """
    if not prompts:
        raise CollectionError("collect_through_object() needs at least one prompt.")
    tail = torch.tensor(list(object_ids), dtype=torch.long)
    width = len(object_ids) + 1
    captured: dict[str, Tensor] = {}

    def capture(act: Tensor, hook: Any) -> None:
        captured["acts"] = act[:, -width:, :].detach()

    # Unembed only the positions read: (batch, width, vocab) logits.
    hooks: list[tuple[str, Callable[..., Any]]] = [(site.hook, capture)]
    hooks += keep_last_positions(model, width)

    # Sort by length so each batch pads as little as possible; results in the prompts' order.
    lengths = [len(model.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    acts = torch.empty(len(prompts), width, int(model.cfg.d_model), dtype=torch.float64)
    preds = torch.empty(len(prompts), width, dtype=torch.long)
    for i in range(0, len(prompts), batch_size):
        idx = torch.tensor(order[i : i + batch_size])
        batch = tokenize_batch(model, [prompts[j] for j in idx.tolist()])
        n = batch.tokens.shape[0]
        tokens = torch.cat([batch.tokens, tail.to(batch.tokens.device).expand(n, -1)], dim=1)
        ones = torch.ones((n, len(object_ids)), dtype=batch.attention_mask.dtype)
        mask = torch.cat([batch.attention_mask, ones.to(batch.attention_mask.device)], dim=1)
        with model.hooks(fwd_hooks=hooks):
            logits = model(tokens, attention_mask=mask)
        acts[idx] = captured["acts"].to("cpu", torch.float64)
        preds[idx] = logits[:, -width:, :].argmax(-1).cpu()
    if not torch.isfinite(acts).all():
        raise CollectionError(f"Non-finite activations at {site.hook!r} through the object.")
    return acts, preds


def fit_continuation(
    source: Tensor,
    target: Tensor,
    target_predictions: Tensor,
    object_ids: Sequence[int],
    make_map: Callable[[], TransportMap],
    decode: Callable[[int], str],
    *,
    max_maps: int,
) -> tuple[TransportMap, ...]:
    """Fit the continuation maps of one edit from :func:`collect_through_object` outputs.

    Args:
        source: ``(n_s, K + 1, d)`` activations of the source prompts through the object.
        target: ``(n_t, K + 1, d)`` the same for the kept target prompts.
        target_predictions: ``(n_t, K + 1)`` their greedy next tokens.
        object_ids: the object's ``K`` token ids.
        make_map: returns an unfitted map of the edit's kind.
        decode: token id -> text.
        max_maps: fit at most this many maps.

    Returns:
        Maps for ``k = 1, 2, ...``; the chain stops where fewer than two target prompts
        continue the object (the rest is then left to the model).
    """
    maps: list[TransportMap] = []
    for k in range(1, min(len(object_ids), max_maps) + 1):
        pred = target_predictions[:, k]
        if k < len(object_ids):
            keep = pred == int(object_ids[k])
        else:
            keep = torch.tensor([ends_word(decode(int(t))) for t in pred], dtype=torch.bool)
        if int(keep.sum()) < 2:
            log.info("Continuation stops at object token %d: %d valid targets", k, int(keep.sum()))
            break
        try:
            maps.append(make_map().fit(source[:, k], target[keep, k]))
        except SakeLensError as exc:
            log.info("Continuation stops at object token %d: %s", k, exc)
            break
    return tuple(maps)


def continuation_rows(generated: Tensor, rows: Tensor, object_ids: Sequence[int], k: int) -> Tensor:
    """The ``rows`` whose first ``k`` generated tokens are the object's first ``k`` tokens.

    Args:
        generated: ``(batch, n)`` token ids after each row's prompt.
        rows: candidate row indices.
        object_ids: the new object's token ids.
        k: how many generated tokens to compare (``1 .. len(object_ids)``).
    """
    if not 1 <= k <= len(object_ids) or generated.shape[1] < k or rows.numel() == 0:
        return rows[:0]
    prefix = torch.tensor(list(object_ids[:k]), device=generated.device)
    match = (generated[rows, :k] == prefix).all(dim=1)
    return rows[match]
