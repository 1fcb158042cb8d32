"""Continuation maps (``generation="object"``): the whole new object during generation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sake_lens import EditConfig, EditRequest, fit_edit, generate, steered
from sake_lens.evaluate.scoring import ScoreRequest, score_rows
from sake_lens.registry.book import load_edit, save_edit
from sake_lens.steer.continuation import (
    collect_through_object,
    continuation_rows,
    ends_word,
    object_token_ids,
)
from sake_lens.steer.hooks import steering_hooks
from sake_lens.steer.workflow import default_paraphrases

# A new object of three tokens whose first token (" P") the unedited model continues otherwise.
REQUEST = EditRequest("Porsche 911", "{}, produced by", "Porsche", "Nokia")


def test_continuation_rows_match_exact_prefixes() -> None:
    generated = torch.tensor([[5, 6, 7], [5, 9, 7], [4, 6, 7]])
    rows = torch.arange(3)
    assert continuation_rows(generated, rows, (5, 6, 8), 1).tolist() == [0, 1]
    assert continuation_rows(generated, rows, (5, 6, 8), 2).tolist() == [0]
    assert continuation_rows(generated, rows, (5, 6), 2).tolist() == [0]  # the end-of-word map
    assert continuation_rows(generated, rows, (5, 6), 3).tolist() == []  # past the object
    assert continuation_rows(generated[:, :1], rows, (5, 6), 2).tolist() == []  # not generated yet
    assert continuation_rows(generated, rows, (5, 6), 0).tolist() == []


def test_ends_word() -> None:
    assert ends_word(".") and ends_word(" and") and ends_word("\n") and ends_word("'s")
    assert not ends_word("ically") and not ends_word("a") and not ends_word("")
    assert not ends_word("<|im_end|>") and not ends_word("<|endoftext|>")


def test_object_config_is_validated() -> None:
    with pytest.raises(ValueError, match="object_alpha"):
        EditConfig(object_alpha=-1.0)
    with pytest.raises(ValueError, match="object_tokens"):
        EditConfig(object_tokens=-1)
    assert EditConfig().generation == "object"


@pytest.mark.slow
class TestOnTheDefaultModel:
    @pytest.fixture(scope="class")
    def edit(self, model):
        paraphrases = default_paraphrases(REQUEST, n=20, seed=0)
        return fit_edit(model, REQUEST, paraphrases)

    def test_object_states_match_the_prompt_alone(self, model, edit) -> None:
        from sake_lens import collect_activations

        ids = object_token_ids(model, "Nokia")
        assert len(ids) == len(edit.object_ids) > 1
        through, preds = collect_through_object(model, [REQUEST.text], edit.site, ids)
        alone = collect_activations(model, [REQUEST.text], [edit.site], predict=True)
        torch.testing.assert_close(through[:, 0], alone[edit.site.hook], atol=1e-4, rtol=1e-4)
        assert preds[0, 0] == alone.predictions[0]

    def test_whole_object_is_generated_and_text_goes_on(self, model, edit) -> None:
        assert 1 <= len(edit.continuation) <= edit.config.object_tokens
        with steered(model, [edit]):
            out = generate(model, [REQUEST.text], max_new_tokens=8)
        assert out[0].startswith(" Nokia") and not out[0].startswith(" Nokian"), out
        with steered(model, [edit]):
            ids = generate(model, [REQUEST.text], max_new_tokens=8, return_tokens=True)
        assert len(ids[0]) == 8, out  # no early end of text

    def test_cached_generation_equals_uncached_with_continuation(self, model, edit) -> None:
        from sake_lens.steer.generation import kv_cache_is_correct

        prompts = [
            REQUEST.text,
            "A much longer prompt, so that the batch is padded: " + REQUEST.text,
        ]
        with steered(model, [edit]):
            # the KV-cache probe sees the bare model even inside a steered block
            assert kv_cache_is_correct(model, refresh=True)
            cached = generate(model, prompts, max_new_tokens=8, return_tokens=True)
            uncached = generate(
                model, prompts, max_new_tokens=8, use_kv_cache=False, return_tokens=True
            )
        assert cached == uncached
        assert [r[: len(edit.object_ids)] for r in cached] == [list(edit.object_ids)] * 2
        assert all(not hp._forward_hooks for hp in model.hook_dict.values())

    def test_continuation_acts_only_while_spelling_the_object(self, model, edit) -> None:
        hook = steering_hooks([edit])[0][1]
        from sake_lens.steer.generation import GenerationStep, publish_step

        d = int(model.cfg.d_model)
        act = torch.randn(1, 3, d)
        hook.decisions = torch.zeros(1, dtype=torch.long)
        other = (edit.object_ids[0] + 1) % model.cfg.d_vocab
        for generated, changed in (
            ([edit.object_ids[0], edit.object_ids[1]], True),
            ([other, edit.object_ids[1]], False),
        ):
            step = GenerationStep(
                step=2,
                use_cache=False,
                prompt_lengths=(1,),
                pad_lengths=(0,),
                offset=0,
                seq_len=3,
                generated=torch.tensor([generated]),
            )
            before = act.clone()
            with publish_step(step):
                hook._apply_generated(act, 1, step)  # position 1 = first generated token
            out = hook._result(act)  # the hook writes into a copy and returns it
            assert torch.equal(act, before)
            assert bool((out != before).any()) is changed
            assert torch.equal(out[:, 2], before[:, 2])

    def test_teacher_forced_object_probability_rises(self, model, edit) -> None:
        req = [ScoreRequest(REQUEST.text, (" Nokia",))]
        hooks = steering_hooks([dataclasses.replace(edit, continuation=())])
        plain = score_rows(model, req, hooks=hooks)[0].logprobs[0]
        hooks = steering_hooks([edit])
        with_cont = score_rows(model, req, hooks=hooks)[0].logprobs[0]
        assert with_cont > plain

    def test_saved_edit_keeps_its_continuation(self, model, edit, tmp_path) -> None:
        save_edit(edit, tmp_path / "e")
        loaded = load_edit(tmp_path / "e", model=model)
        assert loaded.object_ids == edit.object_ids
        assert len(loaded.continuation) == len(edit.continuation)
        h = torch.randn(2, int(model.cfg.d_model), dtype=torch.float64)
        for a, b in zip(loaded.continuation, edit.continuation):
            torch.testing.assert_close(a.displacement(h), b.displacement(h))
        with steered(model, [loaded]):
            again = generate(model, [REQUEST.text], max_new_tokens=6)
        with steered(model, [edit]):
            first = generate(model, [REQUEST.text], max_new_tokens=6)
        assert again == first

    def test_prompt_mode_fits_no_continuation(self, model) -> None:
        config = EditConfig(generation="prompt")
        edit = fit_edit(model, REQUEST, default_paraphrases(REQUEST, n=8, seed=0), config=config)
        assert edit.continuation == () and edit.object_ids == ()
