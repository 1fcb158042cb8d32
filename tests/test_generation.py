"""Generation through the bridge: KV cache vs no cache, batching, hooks and the step signal.

Integration tests on the real default model (SmolLM2-135M-Instruct, no BOS).
"""

from __future__ import annotations

import logging

import pytest
import torch

from sake_lens.errors import GenerationError
from sake_lens.model.loading import default_model_dir, load_model
from sake_lens.steer.generation import (
    GenerationStep,
    current_step,
    generate,
    generate_tokens,
    kv_cache_is_correct,
)

pytestmark = pytest.mark.slow

PROMPTS = [
    "The mother tongue of Danielle Darrieux is",
    "The Eiffel Tower is located in the city of",
    "Paris is",
    "The capital of France is",
]


@pytest.fixture(scope="module")
def model():
    return load_model()


def _prompt_ids(model, prompt: str) -> list[int]:
    return model.tokenizer.encode(prompt, add_special_tokens=False)


def _no_hooks_attached(model) -> bool:
    return all(not hp._forward_hooks for hp in model.hook_dict.values())


def test_kv_cache_is_proven_correct_after_patch(model):
    assert kv_cache_is_correct(model, refresh=True)


def test_cached_equals_uncached_and_batched_equals_single(model):
    cached = generate(model, PROMPTS, max_new_tokens=10, return_tokens=True)
    uncached = generate(model, PROMPTS, max_new_tokens=10, use_kv_cache=False, return_tokens=True)
    single = [generate(model, p, max_new_tokens=10, return_tokens=True)[0] for p in PROMPTS]
    assert cached == uncached
    assert cached == single
    assert all(len(t) > 0 for t in cached)


def test_matches_plain_transformers(model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).eval()
    eos = model.tokenizer.eos_token_id
    ours = generate(model, PROMPTS[:3], max_new_tokens=10, return_tokens=True)
    for prompt, got in zip(PROMPTS[:3], ours):
        ids = torch.tensor([_prompt_ids(model, prompt)])
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False
            )
        want = [t for t in out[0, ids.shape[1] :].tolist()]
        if eos in want:
            want = want[: want.index(eos)]
        assert got == want, prompt


def test_darrieux_speaks_french(model):
    assert generate(model, PROMPTS[0], max_new_tokens=4)[0].startswith(" French")


def test_raising_hook_leaves_no_hooks_attached(model):
    def boom(act, *, hook):
        step = current_step()
        if step is not None and step.step == 2:
            raise RuntimeError("boom")
        return act

    assert _no_hooks_attached(model)
    with pytest.raises(RuntimeError, match="boom"):
        generate(
            model, PROMPTS[:2], max_new_tokens=5, fwd_hooks=[("blocks.3.hook_resid_post", boom)]
        )
    assert _no_hooks_attached(model)
    assert current_step() is None


def test_unknown_hook_name_raises_with_suggestion(model):
    with pytest.raises(GenerationError, match=r"ln_final\.hook_out"):
        generate(
            model, "Hi", max_new_tokens=1, fwd_hooks=[("ln_final.hook_outt", lambda a, hook: a)]
        )
    assert _no_hooks_attached(model)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_step0_vector_changes_only_the_first_token(model, use_kv_cache):
    prompt = PROMPTS[0]
    ids = _prompt_ids(model, prompt)
    n = len(ids)
    target = model.tokenizer.encode(" English", add_special_tokens=False)[0]
    direction = model.W_U[:, target].detach()  # pushes the logits towards " English"
    steps: list[GenerationStep] = []

    def steer(act, *, hook):  # act: (batch, pos, d_model)
        step = current_step()
        assert step is not None and act.shape[1] == step.seq_len
        steps.append(step)
        if step.step == 0:
            act = act.clone()
            act[:, step.positions_of_last_prompt_token[0]] += 100.0 * direction / direction.norm()
        return act

    steered = generate_tokens(
        model,
        [ids],
        max_new_tokens=5,
        fwd_hooks=[("ln_final.hook_out", steer)],
        use_kv_cache=use_kv_cache,
        stop_at_eos=False,
    )[0]
    plain = generate_tokens(model, [ids], max_new_tokens=5, use_kv_cache=use_kv_cache)[0]
    assert steered[0] != plain[0]
    # After the first token the hook is inert: the rest is the unsteered continuation.
    rest = generate_tokens(model, [[*ids, steered[0]]], max_new_tokens=4, stop_at_eos=False)[0]
    assert steered[1:] == rest
    assert [s.step for s in steps] == list(range(5))
    assert steps[0].positions_of_last_prompt_token == (n - 1,)
    assert steps[0].generated_positions == range(0)
    for k, s in enumerate(steps[1:], start=1):
        assert s.use_cache is use_kv_cache
        if use_kv_cache:
            assert (s.seq_len, s.positions_of_last_prompt_token) == (1, None)
            assert s.generated_positions == range(0, 1)
        else:
            assert (s.seq_len, s.positions_of_last_prompt_token) == (n + k, (n - 1,))
            assert s.generated_positions == range(n, n + k)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_step_signal_locates_tokens_in_a_left_padded_batch(model, use_kv_cache):
    rows = [_prompt_ids(model, p) for p in PROMPTS[1:3]]  # different lengths
    seen: list[tuple[GenerationStep, torch.Tensor]] = []

    def record(act, *, hook):  # the embeddings of the tokens in this pass
        seen.append((current_step(), act.detach().clone()))
        return act

    out = generate_tokens(
        model,
        rows,
        max_new_tokens=3,
        fwd_hooks=[("hook_embed", record)],
        use_kv_cache=use_kv_cache,
        stop_at_eos=False,
    )
    w_e = model.W_E.detach()
    step0 = seen[0][0]
    assert step0.prompt_lengths == tuple(len(r) for r in rows)
    assert step0.pad_lengths == tuple(max(map(len, rows)) - len(r) for r in rows)
    for step, act in seen:
        for row in range(len(rows)):
            if step.positions_of_last_prompt_token is not None:
                pos = step.positions_of_last_prompt_token[row]
                torch.testing.assert_close(act[row, pos], w_e[rows[row][-1]])
            generated = list(step.generated_positions)
            assert len(generated) == (1 if use_kv_cache and step.step else step.step)
            for j, pos in enumerate(generated):
                token = out[row][step.step - len(generated) + j]
                torch.testing.assert_close(act[row, pos], w_e[token])


def test_sampling_is_seeded(model):
    a = generate(model, PROMPTS[:2], max_new_tokens=5, temperature=1.0, seed=3)
    b = generate(model, PROMPTS[:2], max_new_tokens=5, temperature=1.0, seed=3)
    assert a == b


def test_broken_cache_is_detected_and_falls_back(model, monkeypatch, caplog):
    """Without sake_lens's patch the bridge's cache is wrong: the probe must catch it."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    from sake_lens.steer import generation

    original = getattr(AttentionBridge._update_kv_cache, "__wrapped__", None)
    if original is None:
        pytest.skip("the KV-cache patch is not installed")
    monkeypatch.setattr(AttentionBridge, "_update_kv_cache", original)
    monkeypatch.setattr(generation, "apply_bridge_patches", lambda: None)
    try:
        with caplog.at_level(logging.WARNING, logger=generation.__name__):
            ok = kv_cache_is_correct(model, refresh=True)
        if ok:
            pytest.skip("TransformerLens fixed the cache bug upstream: drop the patch")
        assert "differs from uncached" in caplog.text
        assert generate(model, PROMPTS[0], max_new_tokens=4)[0].startswith(" French.")
    finally:
        monkeypatch.undo()
        assert kv_cache_is_correct(model, refresh=True)
