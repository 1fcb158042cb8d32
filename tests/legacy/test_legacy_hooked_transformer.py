"""The core hook-based workflow on a legacy ``HookedTransformer`` (TransformerLens 3.x).

TransformerLens 4.x removed ``HookedTransformer``; these tests run in the second environment
that ``.ci/run`` creates with ``transformer-lens==3.9.*`` and are skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

try:
    from transformer_lens import HookedTransformer  # noqa: F401
except ImportError:  # TL 4.x removed it (its module __getattr__ raises ImportError)
    pytest.skip("HookedTransformer needs transformer-lens 3.x", allow_module_level=True)

import sake_lens
from sake_lens.model.sites import final_site, offered_sites


@pytest.fixture(scope="module")
def legacy_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    from sake_lens.model.loading import default_model_dir, load_model

    if not default_model_dir().exists():
        load_model()  # writes the tokenizer cache
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=64,
        d_head=16,
        n_heads=4,
        d_mlp=128,
        d_vocab=len(tokenizer),
        n_ctx=256,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        gated_mlp=True,
        seed=0,
        default_prepend_bos=False,
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.eval()
    return model


def test_legacy_model_is_accepted_as_is(legacy_model):
    assert sake_lens.load_model(legacy_model) is legacy_model
    assert final_site(legacy_model) == "ln_final.hook_normalized"
    for name in offered_sites(legacy_model):
        assert sake_lens.resolve_site(legacy_model, name).hook == name


def test_legacy_batched_collection_matches_single(legacy_model):
    prompts = ["The capital of France is", "Hi", "The mother tongue of Danielle Darrieux is"]
    sites = ["blocks.0.hook_resid_post", "ln_final.hook_out"]
    batched = sake_lens.collect_activations(legacy_model, prompts, sites, predict=True)
    for i, p in enumerate(prompts):
        single = sake_lens.collect_activations(legacy_model, [p], sites, predict=True)
        torch.testing.assert_close(
            batched["ln_final.hook_normalized"][i],
            single["ln_final.hook_normalized"][0],
            atol=1e-4,
            rtol=1e-4,
        )


def test_legacy_edit_steers_and_generates(legacy_model):
    request = sake_lens.EditRequest(
        "Danielle Darrieux", "The mother tongue of {} is", "French", "English"
    )
    # A random model says nothing sensible: skip target validation, fit the map anyway.
    config = sake_lens.EditConfig(
        distributions=sake_lens.DistributionConfig(validate_targets=False, min_purity=0.0)
    )
    edit = sake_lens.fit_edit(
        legacy_model,
        request,
        ["The native language of {} is", "{} grew up speaking"],
        config=config,
    )
    tokens = legacy_model.to_tokens(request.text, prepend_bos=False)
    with torch.no_grad():
        base = legacy_model(tokens)
        with sake_lens.steered(legacy_model, [edit]):
            moved = legacy_model(tokens)
            out = sake_lens.generate(legacy_model, request.text, max_new_tokens=3)
    assert (base - moved).abs().max() > 1e-4
    assert len(out) == 1
    assert all(not hp._forward_hooks for hp in legacy_model.hook_dict.values())
