"""Sites are validated against the model; batched collection equals one prompt at a time."""

from __future__ import annotations

import pytest
import torch

from sake_lens import CollectionError, SiteError, collect_activations, offered_sites, resolve_site
from sake_lens.model.sites import Site, check_site_steers, site_layer
from sake_lens.model.tokens import starts_object, tokenize_batch

PROMPTS = [
    "The mother tongue of Danielle Darrieux is",
    "The Eiffel Tower is in the city of",
    "Hi",
    "The capital of France is",
    "Zoë Ångström was born in",
]


def test_site_parsing():
    assert site_layer("blocks.12.hook_resid_post") == 12
    assert site_layer("ln_final.hook_out") is None
    with pytest.raises(SiteError, match="position"):
        Site("ln_final.hook_out", position="middle")  # type: ignore[arg-type]
    with pytest.raises(SiteError, match="hook name"):
        Site("")


def test_unknown_site_lists_closest_names(tiny_model):
    with pytest.raises(SiteError, match=r"blocks\.1\.hook_resid_post"):
        resolve_site(tiny_model, "blocks.1.hook_resid_pots")
    with pytest.raises(SiteError, match=r"layers 0\.\.1"):
        resolve_site(tiny_model, "blocks.7.hook_resid_post")


def test_observation_only_site_is_refused(tiny_model):
    # The bridge exposes hooks that only observe: writing to them changes nothing downstream.
    with pytest.raises(SiteError, match="cannot steer"):
        resolve_site(tiny_model, "hook_pos_embed")


def test_disabled_hook_is_a_site_error(tiny_model):
    with pytest.raises(SiteError, match="cannot be hooked"):
        check_site_steers(tiny_model, "blocks.0.hook_attn_in")


@pytest.mark.slow
def test_every_offered_site_steers_the_real_model(model):
    """Writing to each offered site changes the logits of the real default model."""
    sites = offered_sites(model)
    assert sites[0] == "ln_final.hook_out" and len(sites) == 31
    for name in sites:
        assert check_site_steers(model, name), name
        assert resolve_site(model, name).hook == name


def test_batched_collection_equals_one_at_a_time(tiny_model):
    sites = ["blocks.0.hook_resid_post", "ln_final.hook_out"]
    batched = collect_activations(tiny_model, PROMPTS, sites, batch_size=3, predict=True)
    for i, prompt in enumerate(PROMPTS):
        single = collect_activations(tiny_model, [prompt], sites, predict=True)
        for s in sites:
            torch.testing.assert_close(batched[s][i], single[s][0], atol=1e-4, rtol=1e-4)
        assert int(batched.predictions[i]) == int(single.predictions[0])
    assert batched[sites[0]].dtype == torch.float64
    assert batched.prepend_bos is False


@pytest.mark.slow
def test_batched_collection_equals_one_at_a_time_real_model(model):
    sites = ["blocks.5.hook_resid_post", "ln_final.hook_out"]
    batched = collect_activations(model, PROMPTS, sites, batch_size=4, predict=True)
    for i, prompt in enumerate(PROMPTS):
        single = collect_activations(model, [prompt], sites, predict=True)
        for s in sites:
            scale = single[s][0].abs().max()
            assert (batched[s][i] - single[s][0]).abs().max() <= 1e-4 * max(1.0, float(scale))
        assert int(batched.predictions[i]) == int(single.predictions[0])


def test_collection_stops_early_without_changing_values(tiny_model):
    early = collect_activations(tiny_model, PROMPTS, ["blocks.0.hook_resid_post"])
    full = collect_activations(tiny_model, PROMPTS, ["blocks.0.hook_resid_post"], predict=True)
    torch.testing.assert_close(early["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"])


@pytest.mark.parametrize("bad", [[], [""], ["ok", "   "], [None]])
def test_bad_prompts(tiny_model, bad):
    with pytest.raises(CollectionError):
        collect_activations(tiny_model, bad, ["ln_final.hook_out"])


def test_prompt_longer_than_context_is_an_error(tiny_model):
    with pytest.raises(CollectionError, match="context"):
        tokenize_batch(tiny_model, ["word " * 300])


def test_left_padding_layout(tiny_model):
    batch = tokenize_batch(tiny_model, ["a b c d e", "x"])
    assert batch.attention_mask[1, 0] == 0 and batch.attention_mask[1, -1] == 1
    assert batch.lengths.tolist()[0] > batch.lengths.tolist()[1]


def test_starts_object():
    assert starts_object(" English", "English")
    assert not starts_object(" Eng", "English")  # a part of a word is not the word
    assert starts_object(" Eng", "English", first_token=" Eng")  # unless the tokenizer splits so
    assert starts_object(" H", "HBO", first_token=" H")
    assert not starts_object(" a", "actor")
    assert not starts_object(" French", "English")
    assert not starts_object(" ", "English")
    assert starts_object(" New", "New York City")
    assert starts_object("5", "5")
