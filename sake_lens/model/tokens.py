"""Tokenisation conventions: BOS per model, left-padded batches, each row's last token.

SmolLM2 was not trained with a BOS token: with one, its greedy continuation of "The mother
tongue of Danielle Darrieux is" is " a"; without, " French". The convention is chosen per model
(:func:`bos_convention`) and recorded with every edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from ..errors import CollectionError

__all__ = [
    "Batch",
    "bos_convention",
    "set_bos_convention",
    "tokenize_batch",
    "check_prompts",
    "starts_object",
    "object_first_token",
]

# Tokenizers whose BOS token is a chat-turn marker: those models were not trained with it
# in front of plain text.
_CHAT_MARKER_BOS = {"<|im_start|>", "<|endoftext|>"}


def set_bos_convention(model: Any, prepend_bos: bool) -> None:
    """Record whether sake_lens prepends BOS for ``model`` (stored on the model object)."""
    model.sake_lens_prepend_bos = bool(prepend_bos)


def bos_convention(model: Any) -> bool:
    """Whether to prepend BOS for this model.

    An explicit :func:`set_bos_convention` wins; otherwise models whose BOS token is a chat-turn
    marker (SmolLM2's ``<|im_start|>``) get no BOS, and others follow TransformerLens's
    ``cfg.default_prepend_bos``.

    Returns:
        True when prompts get a BOS token.
    """
    explicit = getattr(model, "sake_lens_prepend_bos", None)
    if explicit is not None:
        return bool(explicit)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "bos_token", None) in _CHAT_MARKER_BOS:
        return False
    return bool(getattr(model.cfg, "default_prepend_bos", True))


@dataclass(frozen=True)
class Batch:
    """A left-padded batch of prompts.

    ``tokens[i, last[i]]`` is row ``i``'s last real token; with left padding ``last`` is always
    ``seq - 1``, but code reads it from here so right padding would work too.
    """

    tokens: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    last: Int[Tensor, " batch"]
    lengths: Int[Tensor, " batch"]
    prepend_bos: bool

    @property
    def padded(self) -> Bool[Tensor, ""]:
        return (self.attention_mask == 0).any()


def check_prompts(prompts: Sequence[str] | str) -> list[str]:
    """Validate prompts: a non-empty list of non-blank strings."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise CollectionError("No prompts given; pass at least one prompt.")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise CollectionError(f"Prompt {i} is a {type(p).__name__}, not a string: {p!r}.")
        if not p.strip():
            raise CollectionError(
                f"Prompt {i} is empty or only whitespace ({p!r}); remove it or write the prompt."
            )
    return prompts


def _encode(model: Any, text: str, prepend_bos: bool) -> list[int]:
    tokenizer = model.tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    if prepend_bos:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise CollectionError(
                "prepend_bos=True but the tokenizer has no BOS token; use prepend_bos=False."
            )
        ids = [bos, *ids]
    return ids


def tokenize_batch(
    model: Any,
    prompts: Sequence[str],
    *,
    prepend_bos: bool | None = None,
    device: torch.device | str | None = None,
) -> Batch:
    """Tokenise ``prompts`` into one left-padded batch.

    Prompts longer than the model's context (``cfg.n_ctx``) raise :class:`CollectionError`:
    sake_lens never truncates silently, because a truncated prompt loses its subject or its
    relation.
    """
    prompts = check_prompts(prompts)
    if prepend_bos is None:
        prepend_bos = bos_convention(model)
    rows = [_encode(model, p, prepend_bos) for p in prompts]
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    for i, ids in enumerate(rows):
        if not ids:
            raise CollectionError(f"Prompt {i} ({prompts[i]!r}) tokenises to nothing.")
        if n_ctx and len(ids) > n_ctx:
            raise CollectionError(
                f"Prompt {i} has {len(ids)} tokens, more than the model's context of {n_ctx}. "
                "Shorten it (sake_lens does not truncate, since truncation drops the subject "
                "or the relation)."
            )
    width = max(len(r) for r in rows)
    pad = model.tokenizer.pad_token_id
    if pad is None:
        pad = model.tokenizer.eos_token_id or 0
    tokens = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        tokens[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[i, width - len(ids) :] = 1
    if device is None:
        device = model.cfg.device
    lengths = mask.sum(1)
    last = torch.full((len(rows),), width - 1, dtype=torch.long)
    return Batch(tokens.to(device), mask.to(device), last.to(device), lengths, prepend_bos)


def starts_object(token_text: str, obj: str, *, first_token: str | None = None) -> bool:
    """Whether a predicted token starts the object ``obj`` (the paper's greedy criterion).

    The token, stripped of whitespace and case-folded, must be a non-empty prefix of the
    object that covers a whole word of it — " English" for "English", " New" for "New York" —
    or be exactly the object's own first token (``first_token``, as the tokenizer splits the
    object after the prompt: " H" for "HBO" when "HBO" is tokenised " H" + "BO"). A short token
    that merely begins the object's first word (" a" for "actor") does not count.

    Example:
        >>> starts_object(" English", "English"), starts_object(" New", "New York")
        (True, True)
        >>> starts_object(" a", "actor"), starts_object(" H", "HBO", first_token=" H")
        (False, True)
    """
    tok = token_text.strip().casefold()
    target = obj.strip().casefold()
    if not tok or not target.startswith(tok):
        return False
    if len(tok) == len(target) or not target[len(tok)].isalnum() or not tok[-1].isalnum():
        return True
    return first_token is not None and first_token.strip().casefold() == tok


def object_first_token(tokenizer: Any, obj: str) -> str:
    """The object's first token as it follows a prompt (with its leading space), decoded."""
    ids = tokenizer.encode(" " + obj.strip(), add_special_tokens=False)
    return str(tokenizer.decode([ids[0]])) if ids else ""
