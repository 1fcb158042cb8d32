"""No leakage: fitting prompts never include a record's evaluation prompts."""

from __future__ import annotations

import json

import pytest

from sake_lens.errors import DistributionError
from sake_lens.prompts import (
    TemplateBankGenerator,
    check_no_leakage,
    evaluation_prompts,
    find_leaks,
    fitting_prompts,
    record_request,
)
from sake_lens.prompts.text import comparison_keys
from tests.helpers import DEV_DATA

DEV = DEV_DATA  # the CounterFact dev file


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    if not DEV.is_file():
        pytest.skip(f"{DEV} not available")
    return json.loads(DEV.read_text())


def _assert_clean(prompts: list[str], record: dict) -> None:
    subject = record["subject"]
    evaluation = set()
    for e in evaluation_prompts(record):
        evaluation |= comparison_keys(e, subject)
    for p in prompts:
        assert not comparison_keys(p, subject) & evaluation, (record["case_id"], p)


@pytest.mark.parametrize("use_counterfact", [False, True])
def test_no_evaluation_prompt_is_used_for_fitting(dev: list[dict], use_counterfact: bool) -> None:
    """Over 300 dev records. With CounterFact's own templates in the bank (use_counterfact),
    rephrase prompts would be generated and must be excluded."""
    generator = TemplateBankGenerator(use_counterfact_templates=use_counterfact)
    excluded = 0
    for record in dev[::10]:
        ps = fitting_prompts(record, n=30, seed=record["case_id"], generator=generator)
        assert ps.prompts[0] == record_request(record).text
        assert len(ps.prompts) == 30
        _assert_clean(ps.prompts, record)
        excluded += ps.drop_summary.get("evaluation prompt (excluded)", 0)
    if use_counterfact:
        assert excluded > 20  # the exclusion really had work to do


def test_find_leaks_sees_through_case_spacing_and_prefixes() -> None:
    record = {
        "case_id": 7,
        "subject": "Paul",
        "prompt": "{} speaks",
        "ground_truth": "French",
        "target_new": "Dutch",
        "rephrase_prompt": "The kettle is on. Paul is fluent in",
        "locality_prompt": "Anna speaks",
    }
    prompts = ["paul  IS fluent in.", "Something else entirely. Paul is fluent in", "Paul speaks"]
    leaks = find_leaks(prompts, record)
    assert [p for p, _ in leaks] == prompts[:2]
    with pytest.raises(DistributionError, match="evaluation"):
        check_no_leakage(prompts, record)
    check_no_leakage(["Paul speaks"], record)
    ps = fitting_prompts(record, n=20)
    assert not find_leaks(ps.prompts, record)
    assert "Paul is fluent in" not in ps.prompts


def test_rome_format_records() -> None:
    record = {
        "case_id": 0,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "subject": "Danielle Darrieux",
            "target_new": {"str": "English"},
            "target_true": {"str": "French"},
        },
        "paraphrase_prompts": ["It is sunny. Danielle Darrieux's first language is"],
        "neighborhood_prompts": ["The mother tongue of Léon Blum is"],
        "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
        "generation_prompts": ["Danielle Darrieux's mother tongue is"],
    }
    request = record_request(record)
    assert (request.old, request.new) == ("French", "English")
    assert len(evaluation_prompts(record)) == 4
    ps = fitting_prompts(record, n=25)
    assert "Danielle Darrieux's first language is" not in ps.prompts
    assert not find_leaks(ps.prompts, record)
