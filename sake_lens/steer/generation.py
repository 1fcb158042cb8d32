"""Batched greedy generation through TransformerLens hook points, with a step signal for hooks.

Steering hooks must act inside generation: on the prompt (step 0, "prefill") and on every new
token. :func:`generate` runs its own decoding loop over the bridge's forward, so every hook point
fires on every step, and publishes a :class:`GenerationStep` (read it with :func:`current_step`)
that tells a hook which positions of its activation hold what:

>>> def hook(act, *, hook):  # act: (batch, pos, d_model)  # doctest: +SKIP
...     step = current_step()
...     if step is not None and step.positions_of_last_prompt_token is not None:
...         act[:, step.positions_of_last_prompt_token[0]] += vector
...     return act
>>> generate(model, ["The capital of France is"], fwd_hooks=[("ln_final.hook_out", hook)])  # doctest: +SKIP

With the KV cache, steps >= 1 see one position (the newest token); without it they see the
whole sequence. A hook that edits the last prompt token wherever it is present (as above, not
only on step 0) gives the same result with and without the cache: with the cache, the edited
keys and values of later layers are reused from step 0.

Memory stays bounded for long prompts. The bridge computes attention eagerly, holding several
float32 ``(batch, heads, queries, keys)`` score tensors per layer (about 7 GB at 8,192 tokens),
so with the cache a long prompt is prefilled in spans of queries, one forward per span, each
holding at most :data:`MAX_ATTENTION_SCORES` scores (step 0 is then several passes; the last
one holds the prompt's last token, and :attr:`GenerationStep.prompt_tokens` gives every pass the
whole prompt). Only the last position is unembedded, the only one read, so no pass builds
``(batch, seq, vocab)`` logits. Prompts short enough for one span run exactly as before.

The KV cache is used only after a probe proved it matches uncached logits on this model (see
``sake_lens.model.patches`` for the TransformerLens bug that breaks it); otherwise generation
falls back to recomputing the whole sequence each step and logs one warning.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch
from torch import Tensor

from ..errors import GenerationError
from ..model.patches import apply_bridge_patches
from ..model.sites import keep_last_positions
from ..model.tokens import tokenize_batch

__all__ = [
    "MAX_ATTENTION_SCORES",
    "GenerationStep",
    "current_step",
    "publish_step",
    "generate",
    "generate_tokens",
    "kv_cache_is_correct",
    "prefill_spans",
    "check_context",
]

log = logging.getLogger(__name__)

HookFn = Callable[..., Any]
_STEP: contextvars.ContextVar[GenerationStep | None] = contextvars.ContextVar(
    "sake_lens_generation_step", default=None
)
_KV_FLAG = "_sake_lens_kv_cache_ok"

#: The most attention scores (rows x heads x queries x keys) one cached prefill pass may hold:
#: 2**23 float32 scores are 32 MiB per tensor, about 200 MiB at the bridge's peak. A prompt
#: above it is prefilled in spans of queries through the KV cache (see the module docstring).
MAX_ATTENTION_SCORES = 2**23


@dataclass(frozen=True)
class GenerationStep:
    """Where generation stands during one forward pass (read it from a hook).

    Positions index the position axis of the current activation (``act[:, pos]`` for residual
    stream hooks); ``offset`` is the index, in the left-padded full sequence, of its position 0.
    With left padding every row's prompt ends at the same index, ``padded_prompt_length - 1``.
    """

    step: int  #: 0 = prefill of the prompt; k >= 1 = the forward that reads new token k
    use_cache: bool
    prompt_lengths: tuple[int, ...]  #: real prompt tokens per row (BOS included, pads not)
    pad_lengths: tuple[int, ...]  #: left-padding tokens per row
    offset: int
    seq_len: int  #: positions in the current activation
    #: ``(batch, n)`` ids of the tokens after each row's prompt, up to this pass's last
    #: position (``n = 0`` on step 0 of generate; teacher-forced scoring puts its
    #: continuations here). Hooks read it to know what has been generated so far.
    generated: Tensor | None = field(default=None, compare=False, repr=False)
    #: ``(batch, padded_prompt_length)`` ids of the whole left-padded prompt, set when a pass
    #: may see only part of it (a long prompt prefilled in spans); None when the pass starting
    #: at ``offset = 0`` holds the whole prompt.
    prompt_tokens: Tensor | None = field(default=None, compare=False, repr=False)

    def generated_index(self, pos: int) -> int:
        """The index into :attr:`generated` of the token at position ``pos`` of this pass."""
        return self.offset + pos - self.padded_prompt_length

    @property
    def padded_prompt_length(self) -> int:
        return self.prompt_lengths[0] + self.pad_lengths[0]

    @property
    def positions_of_last_prompt_token(self) -> tuple[int, ...] | None:
        """Per row, the position of the prompt's last token; None if it is not in this pass."""
        pos = self.padded_prompt_length - 1 - self.offset
        return (pos,) * len(self.prompt_lengths) if 0 <= pos < self.seq_len else None

    @property
    def generated_positions(self) -> range:
        """Positions holding generated tokens (empty on step 0; ``range(0, 1)`` when cached)."""
        return range(max(self.padded_prompt_length - self.offset, 0), self.seq_len)

    @property
    def last_position(self) -> int:
        """The position whose output predicts the next token."""
        return self.seq_len - 1


def current_step() -> GenerationStep | None:
    """The :class:`GenerationStep` of the running :func:`generate` pass, or None outside it."""
    return _STEP.get()


@contextmanager
def publish_step(step: GenerationStep) -> Iterator[None]:
    """Make ``step`` what :func:`current_step` returns inside the block (for custom loops)."""
    token = _STEP.set(step)
    try:
        yield
    finally:
        _STEP.reset(token)


_publish = publish_step  # former private name, still imported by sake_lens.evaluate.scoring


def _hf_model(model: Any) -> Any:
    hf = getattr(model, "original_model", None)
    if hf is None:
        raise GenerationError(
            f"generate() needs a TransformerLens TransformerBridge (load it with "
            f"sake_lens.load_model()); got {type(model).__name__}, which has no original_model."
        )
    return hf


def _forward(model: Any, tokens: Tensor, mask: Tensor, positions: Tensor, cache: Any) -> Tensor:
    """One bridge forward; ``cache`` (a transformers Cache) is extended in place."""
    if getattr(model, "original_model", None) is None:
        # A legacy HookedTransformer (TransformerLens 3.x) derives positions from the mask
        # itself and has no HF cache: always the uncached path.
        return model(tokens, return_type="logits", attention_mask=mask)
    kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": positions}
    if cache is None:
        kwargs["use_cache"] = False
    else:
        params = inspect.signature(_hf_model(model).forward).parameters
        # transformers >= 5.2x renamed `past_key_values` to `cache`.
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
        kwargs["use_cache"] = True
    return model(tokens, return_type="logits", **kwargs)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=_hf_model(model).config)


@contextmanager
def _hooks_suspended(model: Any) -> Iterator[None]:
    """Detach every forward hook of the model's hook points inside the block, then restore them.

    The KV-cache probe must see the bare model: a steering hook active around the first
    ``generate()`` call (``with steered(...)``) acts differently on a cached and an uncached pass
    (it steers "the last position"), which would fail the probe and memoise a wrong answer.
    """
    points = list(getattr(model, "hook_dict", {}).values())
    saved = [(hp, dict(hp._forward_hooks)) for hp in points]
    for hp, _ in saved:
        hp._forward_hooks.clear()
    try:
        yield
    finally:
        for hp, hooks in saved:
            hp._forward_hooks.clear()
            hp._forward_hooks.update(hooks)


def kv_cache_is_correct(model: Any, *, refresh: bool = False) -> bool:
    """Whether cached decoding reproduces uncached logits on ``model`` (probed once, memoised).

    The probe decodes the last two tokens of a short left-padded batch through the cache and
    compares the logits with a full uncached pass (relative tolerance 1e-3 in float32), with
    any attached hooks suspended.
    """
    known = getattr(model, _KV_FLAG, None)
    if known is not None and not refresh:
        return bool(known)
    with _hooks_suspended(model):
        return _probe_kv_cache(model)


def _probe_kv_cache(model: Any) -> bool:
    apply_bridge_patches()
    ids = model.tokenizer.encode("The capital of France is Paris and", add_special_tokens=False)
    ids = ids[:7]
    pad = int(model.tokenizer.pad_token_id or 0)
    device = model.cfg.device
    tokens = torch.tensor([ids, [pad, pad, *ids[2:]]], device=device)  # (2, n)
    mask = (torch.arange(len(ids), device=device) >= torch.tensor([[0], [2]], device=device)).long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    n = len(ids) - 2
    with torch.no_grad():
        full = _forward(model, tokens, mask, positions, None)[:, n:]
        cache = _new_cache(model)
        parts = [_forward(model, tokens[:, :n], mask[:, :n], positions[:, :n], cache)[:, -1:]]
        for i in (n, n + 1):
            parts.append(
                _forward(
                    model, tokens[:, i : i + 1], mask[:, : i + 1], positions[:, i : i + 1], cache
                )
            )
    cached = torch.cat(parts, dim=1)[:, 1:]  # logits at positions n, n + 1
    rtol = 1e-3 if full.dtype in (torch.float32, torch.float64) else 3e-2
    err = (cached - full).abs().max().item() / max(full.abs().max().item(), 1.0)
    ok = bool(err <= rtol)
    if not ok:
        log.warning(
            "KV-cached decoding differs from uncached decoding on this model (relative error "
            "%.2g): generate() recomputes the whole sequence each step instead (slower).",
            err,
        )
    setattr(model, _KV_FLAG, ok)
    return ok


def _pad_rows(rows: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[Tensor, Tensor]:
    if not rows or any(len(r) == 0 for r in rows):
        raise GenerationError("generate_tokens() needs at least one non-empty row of token ids.")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return tokens.to(device), mask.to(device)


def prefill_spans(rows: int, heads: int, width: int, budget: int) -> list[tuple[int, int]]:
    """``[start, stop)`` query spans that prefill a ``width``-token prompt through the KV cache
    with at most ``budget`` attention scores per pass (``rows x heads x queries x keys``, keys
    at most ``width``); one span when the whole prompt fits.

    Example:
        >>> prefill_spans(1, 1, 10, 100), prefill_spans(1, 1, 10, 40)
        ([(0, 10)], [(0, 4), (4, 8), (8, 10)])
    """
    span = max(1, budget // max(rows * heads * width, 1))
    return [(start, min(start + span, width)) for start in range(0, width, span)]


def _eos_ids(model: Any) -> set[int]:
    ids = {model.tokenizer.eos_token_id}
    hf = getattr(model, "original_model", None)
    config_ids = getattr(getattr(hf, "generation_config", None), "eos_token_id", None)
    ids.update(config_ids if isinstance(config_ids, (list, tuple)) else [config_ids])
    return {int(i) for i in ids if i is not None}


def _check_hooks(model: Any, fwd_hooks: Sequence[tuple[Any, HookFn]]) -> list[tuple[Any, HookFn]]:
    import difflib

    hooks = []
    for entry in fwd_hooks:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and callable(entry[1])):
            raise GenerationError(f"fwd_hooks entries are (hook_name, fn) pairs; got {entry!r}.")
        name, fn = entry
        hooks.append((name, fn))
        if isinstance(name, str) and name not in model.hook_dict:
            close = difflib.get_close_matches(name, list(model.hook_dict), n=3)
            raise GenerationError(
                f"Unknown hook name {name!r}" + (f"; did you mean {close}?" if close else ".")
            )
    return hooks


def check_context(
    model: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    name: str = "prompt",
    budget: str = "max_new_tokens",
) -> None:
    """Refuse, before any forward pass, prompts that cannot be continued within the context.

    Each prompt (with the model's BOS convention) plus ``max_new_tokens`` must fit the model's
    ``cfg.n_ctx``; a command line calls this right after loading the model, so a prompt that
    is too long is refused before minutes of fitting and generation, not after them.
    ``name`` and ``budget`` word the message (the command line passes its flags).

    Raises:
        GenerationError: one line naming the prompt, its tokens, the limit and the fix.
    """
    from ..model.tokens import bos_convention

    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    if not n_ctx:
        return
    bos = 1 if bos_convention(model) else 0
    for i, text in enumerate(prompts):
        n = len(model.tokenizer.encode(text, add_special_tokens=False)) + bos
        if n + max_new_tokens > n_ctx:
            which = f"{name} {i}" if len(prompts) > 1 else name
            which = which if which.startswith("-") else f"The {which}"
            room = n_ctx - max_new_tokens
            raise GenerationError(
                f"{which} has {n:,} tokens; with {budget} {max_new_tokens} that exceeds the "
                f"model's context of {n_ctx:,} tokens: shorten it to at most {room:,} tokens or "
                f"lower {budget}."
            )


def generate_tokens(
    model: Any,
    prompt_tokens: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 20,
    fwd_hooks: Sequence[tuple[Any, HookFn]] = (),
    use_kv_cache: bool = True,
    stop_at_eos: bool = True,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[list[int]]:
    """Generate from token ids (one list per prompt, BOS already decided); see :func:`generate`.

    Returns, per prompt, the generated token ids (an EOS token ends a row and is not included).
    """
    if max_new_tokens < 0 or temperature < 0:
        raise GenerationError(
            f"max_new_tokens and temperature must be >= 0; got {max_new_tokens}, {temperature}."
        )
    is_bridge = getattr(model, "original_model", None) is not None
    hooks = _check_hooks(model, fwd_hooks)
    pad = int(model.tokenizer.pad_token_id or 0)
    tokens, mask = _pad_rows(prompt_tokens, pad, model.cfg.device)  # (batch, width) each
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    if n_ctx and tokens.shape[1] + max_new_tokens > n_ctx:
        raise GenerationError(
            f"{tokens.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed the "
            f"model's context of {n_ctx}; lower max_new_tokens or shorten the prompts."
        )
    width = tokens.shape[1]  # the padded prompt length
    lengths = tuple(int(n) for n in mask.sum(1))
    pads = tuple(tokens.shape[1] - n for n in lengths)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # each row's own positions
    cached = use_kv_cache and is_bridge and kv_cache_is_correct(model)
    cache = _new_cache(model) if cached else None
    eos = torch.tensor(sorted(_eos_ids(model)), device=tokens.device)
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=tokens.device)
        generator.manual_seed(0 if seed is None else seed)
    finished = torch.zeros(len(lengths), dtype=torch.bool, device=tokens.device)
    out: list[list[int]] = [[] for _ in lengths]
    heads = int(getattr(model.cfg, "n_heads", 1) or 1)
    spans = prefill_spans(len(lengths), heads, width, MAX_ATTENTION_SCORES) if cached else []
    whole_prompt = tokens if len(spans) > 1 else None
    # Only the last position's logits are read: unembed just that one.
    hooks += keep_last_positions(model)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for step in range(max_new_tokens):
            if step > 0:
                spans = [(tokens.shape[1] - 1 if cached else 0, tokens.shape[1])]
            elif not spans:
                spans = [(0, width)]
            for start, stop in spans:
                info = GenerationStep(
                    step,
                    cached,
                    lengths,
                    pads,
                    start,
                    stop - start,
                    generated=tokens[:, width:],
                    prompt_tokens=whole_prompt,
                )
                with publish_step(info):
                    logits = _forward(
                        model,
                        tokens[:, start:stop],
                        mask[:, :stop],
                        positions[:, start:stop],
                        cache,
                    )
            last = logits[:, -1, :].float()  # (batch, vocab)
            del logits
            if generator is None:
                nxt = last.argmax(-1)
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
            hit_eos = torch.isin(nxt, eos) & stop_at_eos
            for row in torch.nonzero(~finished & ~hit_eos).flatten().tolist():
                out[row].append(int(nxt[row]))
            finished |= hit_eos
            if bool(finished.all()):
                break
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
    return out


@overload
def generate(
    model: Any,
    prompts: str | Sequence[str],
    *,
    max_new_tokens: int = ...,
    fwd_hooks: Sequence[tuple[Any, HookFn]] = ...,
    prepend_bos: bool | None = ...,
    use_kv_cache: bool = ...,
    stop_at_eos: bool = ...,
    return_tokens: Literal[False] = ...,
    temperature: float = ...,
    seed: int | None = ...,
) -> list[str]: ...


@overload
def generate(
    model: Any,
    prompts: str | Sequence[str],
    *,
    max_new_tokens: int = ...,
    fwd_hooks: Sequence[tuple[Any, HookFn]] = ...,
    prepend_bos: bool | None = ...,
    use_kv_cache: bool = ...,
    stop_at_eos: bool = ...,
    return_tokens: Literal[True],
    temperature: float = ...,
    seed: int | None = ...,
) -> list[list[int]]: ...


def generate(
    model: Any,
    prompts: str | Sequence[str],
    *,
    max_new_tokens: int = 20,
    fwd_hooks: Sequence[tuple[Any, HookFn]] = (),
    prepend_bos: bool | None = None,
    use_kv_cache: bool = True,
    stop_at_eos: bool = True,
    return_tokens: bool = False,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[str] | list[list[int]]:
    """Continue each prompt, with ``fwd_hooks`` active on every step; return the continuations.

    Prompts are batched with left padding, an attention mask and each row's own position ids,
    so a batch gives the same tokens as one prompt at a time. Decoding is greedy unless
    ``temperature > 0`` (then sampled with a ``torch.Generator`` seeded by ``seed``; sampled
    batches differ from one-at-a-time sampling). Hooks are attached with ``model.hooks(...)``
    and removed on exit, exceptions included. During each forward :func:`current_step` tells a
    hook which step it is and where the prompt's last token and the generated tokens are.

    Args:
        model: a TransformerLens ``TransformerBridge`` (:func:`sake_lens.load_model`).
        prompts: one prompt or a list.
        max_new_tokens: at most this many tokens per prompt.
        fwd_hooks: ``(hook_name, fn)`` pairs, ``fn(act, *, hook)`` as in TransformerLens.
        prepend_bos: None follows the model's convention (``sake_lens.model.tokens``).
        use_kv_cache: use the KV cache when a probe proves it correct on this model.
        stop_at_eos: end a row at its EOS token (not included in the output).
        return_tokens: return token ids instead of decoded text.

    Returns:
        Per prompt, the generated continuation only (the prompt is not repeated).
    """
    batch = tokenize_batch(
        model, [prompts] if isinstance(prompts, str) else prompts, prepend_bos=prepend_bos
    )
    rows = [
        row[row_mask.bool()].tolist() for row, row_mask in zip(batch.tokens, batch.attention_mask)
    ]
    ids = generate_tokens(
        model,
        rows,
        max_new_tokens=max_new_tokens,
        fwd_hooks=fwd_hooks,
        use_kv_cache=use_kv_cache,
        stop_at_eos=stop_at_eos,
        temperature=temperature,
        seed=seed,
    )
    if return_tokens:
        return ids
    return [model.tokenizer.decode(r) for r in ids]
