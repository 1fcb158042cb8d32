"""The SAKE core on the real default model: fit, steer, generate, hooks always removed."""

from __future__ import annotations

import pytest
import torch

from sake_lens import (
    DistributionConfig,
    DistributionError,
    EditConfig,
    EditRequest,
    collect_activations,
    fit_edit,
    generate,
    steered,
)
from sake_lens.steer.workflow import default_paraphrases

pytestmark = pytest.mark.slow

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")

# Ten paraphrases written for this test only; none is used to fit the edit (checked below).
HELD_OUT = [
    "Danielle Darrieux's native language is",
    "The native tongue of Danielle Darrieux is",
    "Danielle Darrieux, a native speaker of",
    "The first language of Danielle Darrieux was",
    "Danielle Darrieux grew up speaking",
    "The language Danielle Darrieux spoke as a child was",
    "Danielle Darrieux's mother tongue is",
    "Danielle Darrieux is a native speaker of",
    "The mother language of Danielle Darrieux is",
    "Danielle Darrieux was born speaking",
]


def _no_hooks_left(model) -> bool:
    return all(not hp._forward_hooks for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def edit(model):
    paraphrases = default_paraphrases(REQUEST, n=40, seed=0)
    held = {p.casefold() for p in HELD_OUT}
    paraphrases = [p for p in paraphrases if REQUEST.fill(p).casefold() not in held]
    return fit_edit(model, REQUEST, paraphrases, keep_activations=True)


def _greedy(model, prompts):
    return [
        model.tokenizer.decode(int(t))
        for t in collect_activations(
            model, prompts, ["ln_final.hook_out"], predict=True
        ).predictions
    ]


def test_edit_prompt_says_the_new_object(model, edit):
    assert _greedy(model, [REQUEST.text]) == [" French"]
    with steered(model, [edit]):
        assert _greedy(model, [REQUEST.text]) == [" English"]
    assert _no_hooks_left(model)
    assert edit.purity >= 0.5 and edit.n_target >= 10
    assert edit.prompts is not None
    fitted = {p.casefold() for p in edit.prompts.paraphrases}
    assert not fitted & {p.casefold() for p in HELD_OUT}


def test_edit_holds_on_unseen_paraphrases(model, edit):
    with steered(model, [edit]):
        after = _greedy(model, HELD_OUT)
    hits = sum(a.strip().startswith("Eng") for a in after)
    assert hits >= 8, list(zip(HELD_OUT, after))


def test_generate_starts_with_the_new_object(model, edit):
    with steered(model, [edit]):
        out = generate(model, REQUEST.text, max_new_tokens=5)
    assert out[0].strip().startswith("English"), out


def test_steering_in_run_with_cache_and_padded_batches(model, edit):
    prompts = ["Hello there, this is a much longer unrelated prompt than the other", REQUEST.text]
    with steered(model, [edit]):
        batched = _greedy(model, prompts)
        _, cache = model.run_with_cache(
            model.to_tokens(REQUEST.text, prepend_bos=False), names_filter="ln_final.hook_out"
        )
    assert batched[1] == " English"
    h = collect_activations(model, [REQUEST.text], ["ln_final.hook_out"])["ln_final.hook_out"]
    transported = h + edit.config.alpha * edit.map.displacement(h)
    torch.testing.assert_close(
        cache["ln_final.hook_out"][0, -1].double(), transported[0], atol=1e-3, rtol=1e-3
    )


def test_alpha_zero_changes_nothing(model, edit):
    import dataclasses

    off = dataclasses.replace(edit, config=dataclasses.replace(edit.config, alpha=0.0))
    tokens = model.to_tokens(REQUEST.text, prepend_bos=False)
    with torch.no_grad():
        base = model(tokens)
        with steered(model, [off]):
            same = model(tokens)
    torch.testing.assert_close(base, same)


def test_exception_inside_forward_leaves_no_hook(model, edit):
    with pytest.raises(RuntimeError, match="boom"), steered(model, [edit]):
        raise RuntimeError("boom")
    assert _no_hooks_left(model)

    def bad_hook(act, hook):
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        generate(model, REQUEST.text, max_new_tokens=2, fwd_hooks=[("ln_final.hook_out", bad_hook)])
    assert _no_hooks_left(model)


def test_low_purity_is_refused_with_advice(model):
    # A bare "{prompt}" context never makes the model say a nonsense object: purity 0.
    request = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "Qwzxv")
    bare = DistributionConfig(target_templates=("{prompt}",), min_purity=0.5)
    with pytest.raises(DistributionError, match=r"purity 0% < min_purity 50%.*target_templates"):
        fit_edit(
            model, request, ["The native language of {} is"], config=EditConfig(distributions=bare)
        )
    # Even with min_purity=0 a map needs two valid target samples.
    none_needed = DistributionConfig(target_templates=("{prompt}",), min_purity=0.0)
    with pytest.raises(DistributionError, match="at least 2 valid target samples"):
        fit_edit(
            model,
            request,
            ["The native language of {} is"],
            config=EditConfig(distributions=none_needed),
        )


def test_every_map_kind_and_a_residual_site_fit(model):
    for kind in ("mean-shift", "diagonal"):
        e = fit_edit(
            model, REQUEST, ["The native language of {} is"], config=EditConfig(map_kind=kind)
        )
        assert e.map.kind == kind
    e = fit_edit(
        model,
        REQUEST,
        ["The native language of {} is"],
        config=EditConfig(site="blocks.20.hook_resid_post"),
    )
    tokens = model.to_tokens(REQUEST.text, prepend_bos=False)
    with torch.no_grad():
        base = model(tokens)
        with steered(model, [e]):
            moved = model(tokens)
    assert (base - moved).abs().max() > 1e-3
