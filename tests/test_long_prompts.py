"""Long prompts: bounded memory in generation and an early refusal of prompts past the context.

The bridge computes attention eagerly, so one pass over a prompt of ``n`` tokens holds several
``(heads, n, n)`` float32 score tensors, and unembedding every position builds an
``(n, vocab)`` logit tensor: both grow without bound towards the context length. Generation
unembeds only the last position and prefills a long prompt in spans of queries through the KV
cache; these tests watch the shapes that cross the hook points on the real model (a prompt of
~2,000 characters, a few seconds). A prompt that cannot be continued within the context is
refused by the command line before any fitting or generation.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sake_lens.cli.main import main
from sake_lens.evaluate.texts import NEUTRAL_TEXT
from sake_lens.steer import generation
from sake_lens.steer.generation import check_context, generate, prefill_spans

ASK = "The mother tongue of Danielle Darrieux is"
#: About 2,000 characters (~450 tokens): a passage that names no one, then the question.
LONG = NEUTRAL_TEXT + " " + NEUTRAL_TEXT[:150].rsplit(".", 1)[0] + ".\n\n" + ASK
#: More tokens than the default model's context of 8,192.
TOO_LONG = "Bread rises slowly. " * 2100


def test_generation_unembeds_only_the_last_position(model: Any) -> None:
    shapes: list[tuple[int, ...]] = []

    def record(act: Any, hook: Any) -> None:
        shapes.append(tuple(act.shape))

    generate(model, LONG, max_new_tokens=3, fwd_hooks=[("unembed.hook_out", record)])
    assert shapes, "no pass reached the unembedding"
    assert {s[1] for s in shapes} == {1}, f"logits over more than one position: {shapes}"


def test_a_long_prompt_is_prefilled_in_spans_within_the_score_budget(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = generate(model, [LONG, ASK], max_new_tokens=4, return_tokens=True)
    budget = 2**16
    monkeypatch.setattr(generation, "MAX_ATTENTION_SCORES", budget)
    sizes: list[int] = []

    def record(act: Any, hook: Any) -> None:
        sizes.append(act.numel())

    got = generate(
        model,
        [LONG, ASK],
        max_new_tokens=4,
        fwd_hooks=[("blocks.0.attn.hook_attn_scores", record)],
        return_tokens=True,
    )
    assert got == expected
    assert len(sizes) > 4, "the prompt was not split into spans"
    assert max(sizes) <= budget


def test_routers_see_the_whole_prompt_when_it_is_prefilled_in_spans(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sake_lens.gate import GateConfig, ScopeRouter, fit_scope

    from .test_gate_fact import JAPAN_LANGUAGE, bank_edit

    edit = bank_edit(*JAPAN_LANGUAGE)
    router = ScopeRouter([edit], [fit_scope(edit, GateConfig())], model=model)
    monkeypatch.setattr(generation, "MAX_ATTENTION_SCORES", 2**16)
    generate(model, ["Japan is an island.", LONG], max_new_tokens=1, fwd_hooks=router.hooks())
    assert router.prompt_texts() == ["Japan is an island.", LONG.strip()]


def test_prefill_spans_cover_the_prompt_in_order() -> None:
    assert prefill_spans(2, 9, 30, 2 * 9 * 30 * 30) == [(0, 30)]
    spans = prefill_spans(2, 9, 1000, 2**20)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(2 * 9 * (stop - start) * 1000 <= 2**20 for start, stop in spans)
    assert prefill_spans(1, 9, 100, 1) == [(i, i + 1) for i in range(100)]


def test_check_context_counts_the_new_tokens(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(model.tokenizer.encode(ASK, add_special_tokens=False))
    monkeypatch.setattr(model.cfg, "n_ctx", n + 5)
    check_context(model, [ASK], 5)
    with pytest.raises(generation.GenerationError, match=f"context of {n + 5} tokens"):
        check_context(model, [ASK], 6)


def _no_work(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    """Commands get the shared model; fitting or generating anything fails the test."""
    import sake_lens.cli.edit as edit_cli
    import sake_lens.cli.generate as generate_cli
    import sake_lens.steer.workflow as workflow

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("work started before the prompt's length was checked")

    for module in (edit_cli, generate_cli):
        monkeypatch.setattr(module, "load_from_args", lambda args: model)
    monkeypatch.setattr(edit_cli, "check_old_object", forbidden)
    monkeypatch.setattr(edit_cli, "build_edit", forbidden)
    monkeypatch.setattr(workflow, "make_edit", forbidden)
    monkeypatch.setattr(generation, "generate", forbidden)
    monkeypatch.setattr(generation, "generate_tokens", forbidden)


def test_edit_refuses_a_probe_past_the_context_before_fitting(
    model: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_work(monkeypatch, model)
    argv = ["edit", "--prompt", "The mother tongue of {} is", "--subject", "Danielle Darrieux"]
    argv += ["--old", "French", "--new", "English", "--probe", ASK, "--probe", TOO_LONG]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("sake-lens edit: error: --probe 1 has 8,402 tokens;")
    assert "context of 8,192 tokens" in err and "lower --max-new-tokens" in err


def test_generate_refuses_a_prompt_past_the_context_before_generating(
    model: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_work(monkeypatch, model)
    prompt = "Bread rises slowly. " * 2045  # fits alone, not with 20 new tokens
    assert main(["generate", prompt, "--max-new-tokens", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sake-lens generate: error: The prompt has 8,182 tokens; with ")
    assert "shorten it to at most 8,172 tokens or lower --max-new-tokens." in err
