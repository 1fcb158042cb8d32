"""Prompt modules on the real default model (SmolLM2-135M-Instruct). Slow: marked ``slow``."""

from __future__ import annotations

import pytest

from sake_lens.prompts import (
    DEFAULT_TABLE,
    EditRequest,
    LocalModelGenerator,
    chat_prompt,
    implication_probes,
    verify_attribute_table,
)

pytestmark = pytest.mark.slow

COUNTRIES = ("France", "Germany", "Italy", "Spain", "Japan", "China", "Russia", "Greece")


@pytest.fixture(scope="module")
def model():
    loading = pytest.importorskip("sake_lens.model.loading")
    try:
        return loading.load_model(device="cpu")
    except Exception as exc:  # the default-model wheel may be missing on some machines
        pytest.skip(f"default model unavailable: {exc}")


def test_verify_attribute_table_checks_rows_on_the_model(model) -> None:
    rows = [r for r in DEFAULT_TABLE.rows if r.attribute == "capital" and r.entity in COUNTRIES]
    table = DEFAULT_TABLE.subset(rows)
    known = verify_attribute_table(model, table)
    assert known.verified_on == "SmolLM2-135M-Instruct"
    assert known.get("France", "capital") == "Paris"  # DESIGN.md: the model knows this
    assert set(known.rows) <= set(table.rows)
    request = EditRequest("Danielle Darrieux", "{} is a citizen of", "France", "Japan")
    probes = implication_probes(request, table=known)
    if known.get("Japan", "capital"):
        assert ("Paris", "Tokyo") in {(p.old_answer, p.new_answer) for p in probes}
    assert all(p.relation_chain == ("P27", "capital") for p in probes)


def test_chat_prompt_with_the_real_chat_template(model) -> None:
    text = chat_prompt(model.tokenizer, "The capital of France is")
    assert text.endswith("<|im_start|>assistant\nThe capital of France is")
    tokens = model.to_tokens(text, prepend_bos=False)
    start = model.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokens[0, 0].item() == start  # the template's own first token, no extra BOS
    assert (tokens == start).sum().item() == 3  # system, user, assistant


def test_local_model_generator_runs_on_the_real_model(model, tmp_path) -> None:
    request = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    gen = LocalModelGenerator(
        model, max_new_tokens=8, per_request=3, max_rounds=1, cache_dir=tmp_path
    )
    ps = gen.generate(request, 3, seed=0)
    assert ps.prompts[0] == request.text
    assert ps.relation_id == "P103"
    assert gen.requests_made == 1
    # the reply is cached on disk: a new generator does not run the model again
    again = LocalModelGenerator(
        model, max_new_tokens=8, per_request=3, max_rounds=1, cache_dir=tmp_path
    )
    assert again.generate(request, 3, seed=0).prompts == ps.prompts
    assert again.requests_made == 0
