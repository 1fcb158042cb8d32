"""Batched teacher-forced scoring: greedy next token and whole-object log-probabilities.

Each :class:`ScoreRequest` is a prompt plus continuations to score (objects, with their leading
space). One forward pass reads everything of a row: the greedy next token at the prompt's last
token and, under teacher forcing, $\\log P(c \\mid p) = \\sum_i \\log P(c_i \\mid p, c_{<i})$
for each continuation $c$, so multi-token objects count in full. When every continuation of a
prompt is a single token, the prompt alone is run and all of them are read from its last
position; otherwise one row per multi-token continuation.

Rows are sorted by length and batched as ``[left padding][prompt][continuation][right
padding]``, so every row's prompt ends at the same column. During the forward the pass is
published as a generation step (:class:`~sake_lens.steer.generation.GenerationStep`: prompt end
at that column, continuation tokens as "generated" positions), so steering hooks and routers act
exactly as they do inside :func:`~sake_lens.steer.generation.generate`: the gate decides at the
prompt's last token, and an edit with ``generation="generated"`` also steers the continuation.
The routing decisions of the steering hooks are read back per row (did an edit fire?). Only the
columns that predict scored tokens are unembedded (a slice at ``unembed.hook_in``), so a long
prompt costs no ``(seq, vocab)`` logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import CollectionError
from ..model.tokens import bos_convention, check_prompts
from ..steer.generation import GenerationStep, publish_step

__all__ = ["ScoreRequest", "RowScore", "score_rows", "continuation_logprob"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreRequest:
    """A prompt to score, the continuations whose log-probabilities are wanted, and the index
    of the record (edit) the row belongs to (used by per-record routers; -1 for none).
    ``keep_distribution``: also return the next-token log-distribution (for KL divergences)."""

    prompt: str
    continuations: tuple[str, ...] = ()
    owner: int = -1
    keep_distribution: bool = False


@dataclass(frozen=True)
class RowScore:
    """The outcome of one :class:`ScoreRequest`.

    Attributes:
        greedy_id: the greedy next-token id at the prompt's last token.
        greedy: that token decoded.
        logprobs: per continuation, the sum of its tokens' log-probabilities.
        n_tokens: per continuation, its number of tokens.
        decision: the edit index the steering hooks applied at the prompt's last token (-1:
            none), or None when no steering hook ran.
        first_ids: per continuation, its first token id.
        distribution: the next-token log-probabilities at the prompt's last token
            ``(vocab,)``, float32 (only when the request asked for it).
    """

    greedy_id: int
    greedy: str
    logprobs: tuple[float, ...]
    n_tokens: tuple[int, ...]
    decision: int | None = None
    first_ids: tuple[int, ...] = ()
    distribution: Tensor | None = None


def continuation_logprob(logits: Tensor, ids: Sequence[int]) -> float:
    """Sum of ``log softmax(logits[i])[ids[i]]`` — ``logits[i]`` predicts token ``ids[i]``.

    Example:
        >>> import torch
        >>> logits = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
        >>> round(continuation_logprob(logits, [0, 1]), 6) == round(float(torch.log(torch.tensor(0.375))), 6)
        True
    """
    if logits.shape[0] != len(ids):
        raise ValueError(f"{logits.shape[0]} logit rows for {len(ids)} tokens.")
    logp = torch.log_softmax(logits.double(), dim=-1)  # (k, vocab)
    index = torch.tensor(list(ids), dtype=torch.long, device=logits.device)[:, None]
    return float(logp.gather(1, index).sum())


_UNEMBED_IN = "unembed.hook_in"


def _columns(start: int, stop: int) -> Any:
    def keep(act: Tensor, hook: Any) -> Tensor:
        return act[:, start:stop]  # (batch, seq, d) -> (batch, stop - start, d)

    return keep


@dataclass
class _Seq:
    request: int  # index into the requests
    prompt: list[int]
    cont: list[int]
    reads: list[int]  # continuation indices scored on this row


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _plan(model: Any, requests: Sequence[ScoreRequest]) -> tuple[list[_Seq], list[list[list[int]]]]:
    tokenizer = model.tokenizer
    bos = bos_convention(model)
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    seqs: list[_Seq] = []
    cont_ids: list[list[list[int]]] = []
    check_prompts([r.prompt for r in requests])
    for i, req in enumerate(requests):
        prompt = _encode(tokenizer, req.prompt)
        if bos:
            prompt = [int(tokenizer.bos_token_id), *prompt]
        conts = [_encode(tokenizer, c) for c in req.continuations]
        for c, ids in zip(req.continuations, conts):
            if not ids:
                raise CollectionError(f"The continuation {c!r} of {req.prompt!r} has no tokens.")
        longest = max((len(c) for c in conts), default=0)
        if n_ctx and len(prompt) + longest > n_ctx:
            raise CollectionError(
                f"{req.prompt[:60]!r}... with its continuation has {len(prompt) + longest} "
                f"tokens, more than the model's context of {n_ctx}; shorten the probe."
            )
        cont_ids.append(conts)
        singles = [j for j, c in enumerate(conts) if len(c) == 1]
        multis = [j for j, c in enumerate(conts) if len(c) > 1]
        if not multis:
            seqs.append(_Seq(i, prompt, [], singles))
        else:
            for k, j in enumerate(multis):
                seqs.append(_Seq(i, prompt, conts[j], [j] + (singles if k == 0 else [])))
    return seqs, cont_ids


def _batches(seqs: list[_Seq], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group rows into batches, sorted by length, so that the padded area of a batch
    (rows x (longest prompt + longest continuation)) stays within ``max_tokens`` and at most
    three times its real tokens (plus a slack): a long row never pads a batch of short ones."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i].prompt), len(seqs[i].cont)))
    batches: list[list[int]] = []
    current: list[int] = []
    p_max = c_max = real = 0
    for i in order:
        p, c = len(seqs[i].prompt), len(seqs[i].cont)
        area = (len(current) + 1) * (max(p_max, p) + max(c_max, c))
        if current and (
            len(current) >= batch_size or area > max_tokens or area > 3 * (real + p + c) + 1024
        ):
            batches.append(current)
            current, p_max, c_max, real = [], 0, 0, 0
        current.append(i)
        p_max, c_max, real = max(p_max, p), max(c_max, c), real + p + c
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def score_rows(
    model: Any,
    requests: Sequence[ScoreRequest],
    *,
    hooks: Sequence[tuple[str, Any]] = (),
    steerers: Sequence[Any] = (),
    before_batch: Callable[[list[int]], None] | None = None,
    batch_size: int = 32,
    max_batch_tokens: int = 8192,
) -> list[RowScore]:
    """Score every request in as few forward passes as the batch limits allow.

    Args:
        model: a TransformerLens ``TransformerBridge``.
        requests: what to score.
        hooks: ``(name, fn)`` hooks active during every forward (steering, router hooks).
        steerers: the steering hook objects whose ``decisions`` (per-row edit index) are read
            after each forward.
        before_batch: called with the batch's row owners before each forward (per-record
            routers use it to know which row belongs to which edit).
        batch_size: rows per forward pass.
        max_batch_tokens: at most this many (padded) tokens per forward pass.

    Returns:
        One :class:`RowScore` per request, in order.
    """
    if not requests:
        return []
    seqs, conts = _plan(model, requests)
    tokenizer = model.tokenizer
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    device = model.cfg.device
    slice_unembed = _UNEMBED_IN in getattr(model, "hook_dict", {})
    greedy: dict[int, int] = {}
    logprobs: dict[tuple[int, int], float] = {}
    decisions: dict[int, int] = {}
    distributions: dict[int, Tensor] = {}
    for batch in _batches(seqs, batch_size, max_batch_tokens):
        rows = [seqs[i] for i in batch]
        p_len = max(len(s.prompt) for s in rows)
        c_len = max(len(s.cont) for s in rows)
        tokens = torch.full((len(rows), p_len + c_len), pad, dtype=torch.long)
        mask = torch.zeros_like(tokens)
        for r, s in enumerate(rows):
            tokens[r, p_len - len(s.prompt) : p_len] = torch.tensor(s.prompt)
            tokens[r, p_len : p_len + len(s.cont)] = torch.tensor(s.cont, dtype=torch.long)
            mask[r, p_len - len(s.prompt) : p_len + len(s.cont)] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # each row's own positions
        step = GenerationStep(
            step=0,
            use_cache=False,
            prompt_lengths=tuple(len(s.prompt) for s in rows),
            pad_lengths=tuple(p_len - len(s.prompt) for s in rows),
            offset=0,
            seq_len=p_len + c_len,
            generated=tokens[:, p_len:].to(device),
        )
        if before_batch is not None:
            before_batch([requests[s.request].owner for s in rows])
        for st in steerers:
            st.decisions = None
        # Only columns p_len - 1 ... p_len + c_len - 2 predict scored tokens: unembed just those.
        fwd = list(hooks)
        if slice_unembed:
            fwd.append((_UNEMBED_IN, _columns(p_len - 1, p_len - 1 + max(c_len, 1))))
        first = 0 if slice_unembed else p_len - 1
        with publish_step(step), model.hooks(fwd_hooks=fwd):
            logits = model(
                tokens.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                return_type="logits",
                use_cache=False,
            )
        for r, s in enumerate(rows):
            end = logits[r, first].double()  # (vocab,) predicts the first object token
            if s.request not in greedy:
                greedy[s.request] = int(end.argmax())
            logp_end = torch.log_softmax(end, dim=-1)
            if requests[s.request].keep_distribution and s.request not in distributions:
                distributions[s.request] = logp_end.float().cpu()
            for j in s.reads:
                ids = conts[s.request][j]
                if len(ids) == 1:
                    logprobs[(s.request, j)] = float(logp_end[ids[0]])
                else:
                    part = logits[r, first : first + len(ids)]  # (k, vocab)
                    logprobs[(s.request, j)] = continuation_logprob(part, ids)
            for st in steerers:
                d = getattr(st, "decisions", None)
                if d is not None:
                    value = int(d[r])
                    decisions[s.request] = max(decisions.get(s.request, -1), value)
                else:
                    decisions.setdefault(s.request, -1)
        del logits
    out = []
    for i, req in enumerate(requests):
        ids_i = conts[i]
        lp = tuple(logprobs[(i, j)] for j in range(len(req.continuations)))
        if not all(map(_finite, lp)):
            raise CollectionError(f"Non-finite log-probability while scoring {req.prompt!r}.")
        out.append(
            RowScore(
                greedy_id=greedy[i],
                greedy=tokenizer.decode(greedy[i]),
                logprobs=lp,
                n_tokens=tuple(len(c) for c in ids_i),
                decision=decisions.get(i) if steerers else None,
                first_ids=tuple(c[0] for c in ids_i),
                distribution=distributions.get(i),
            )
        )
    return out


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
