"""Calibrated thresholds (conformal false-positive rate), AUROC, default out-of-scope prompts."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sake_lens.errors import GateError
from sake_lens.gate import (
    GENERIC_PROMPTS,
    auroc,
    calibrate_threshold,
    default_out_of_scope,
    generic_prompts,
    other_relation_prompts,
    other_subject_prompts,
)
from sake_lens.prompts.request import EditRequest

REQ = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")


def test_auroc_known_values() -> None:
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.1, 0.2], [0.3, 0.15]) == 0.75
    assert auroc([0.5], [0.5]) == 0.5  # ties count one half
    assert auroc([], [0.1]) is None and auroc([0.1], []) is None
    assert auroc([0.1], [math.inf]) == 1.0
    with pytest.raises(GateError, match="NaN"):
        auroc([float("nan")], [0.1])


def test_auroc_matches_pairwise_definition() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 10, (30,), generator=g).double()
    neg = torch.randint(3, 13, (40,), generator=g).double()
    pairs = (pos[:, None] < neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert auroc(pos, neg) == pytest.approx(float(pairs.mean()))


def test_conformal_threshold() -> None:
    out = torch.arange(1, 100, dtype=torch.float64)  # 99 out-of-scope distances 1..99
    cal = calibrate_threshold(out, 0.05, in_scope=[0.5, 2.0, 10.0])
    # k = floor(0.05 * 100) = 5: accept d < the 5th smallest.
    assert cal.threshold == 5.0
    assert cal.fpr == pytest.approx(4 / 99)
    assert cal.tpr == pytest.approx(2 / 3)
    assert cal.guaranteed and cal.n_out == 99 and cal.n_in == 3
    assert cal.auroc == pytest.approx((99 + 97.5 + 89.5) / (3 * 99))  # ties count 1/2


def test_too_few_out_of_scope_prompts_is_flagged() -> None:
    cal = calibrate_threshold([3.0, 4.0, 5.0], 0.05)
    assert not cal.guaranteed
    assert cal.threshold == 3.0 and cal.fpr == 0.0


def test_fixed_threshold_and_fpr_by_kind() -> None:
    cal = calibrate_threshold(
        [0.5, 2.0, 0.2, 3.0], 0.1, kinds=["subject", "subject", "generic", "generic"], threshold=1.0
    )
    assert cal.threshold == 1.0
    assert cal.fpr_by_kind == {"subject": 0.5, "generic": 0.5}
    with pytest.raises(GateError, match="kinds"):
        calibrate_threshold([0.5, 2.0], 0.1, kinds=["subject"])


def test_calibration_refuses_nothing_to_calibrate_on() -> None:
    with pytest.raises(GateError, match="out-of-scope"):
        calibrate_threshold([], 0.05)
    with pytest.raises(GateError, match="out-of-scope"):
        calibrate_threshold([math.inf, math.inf], 0.05)
    with pytest.raises(GateError, match="NaN"):
        calibrate_threshold([0.1, float("nan")], 0.05)


def test_zero_distance_negatives_give_a_positive_threshold_and_an_honest_report() -> None:
    cal = calibrate_threshold([0.0] * 30, 0.05)  # out-of-scope prompts identical to the centre
    assert 0 < cal.threshold < 1e-300
    assert cal.fpr == 1.0  # reported, not hidden


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=200),
    st.floats(0.01, 0.5),
)
def test_calibrated_fpr_never_exceeds_target_when_guaranteed(out: list[float], fpr: float) -> None:
    cal = calibrate_threshold(out, fpr)
    assert cal.threshold > 0 and math.isfinite(cal.threshold)
    assert 0.0 <= cal.fpr <= 1.0
    if cal.guaranteed:
        assert cal.fpr <= fpr + 1e-12


def test_default_out_of_scope_prompts() -> None:
    oos = default_out_of_scope(
        REQ,
        n_subjects=5,
        n_relations=4,
        n_generic=3,
        neighbours=["The capital of Peru is", REQ.text],
    )
    assert oos.kinds.count("subject") == 5
    assert oos.kinds.count("relation") == 4
    assert oos.kinds.count("generic") == 3
    assert oos.kinds.count("neighbour") == 1  # the edit's own prompt is never out of scope
    subject_prompts = [p for p, k in zip(oos.prompts, oos.kinds) if k == "subject"]
    assert all(
        p.startswith("The mother tongue of ") and REQ.subject not in p for p in subject_prompts
    )
    relation_prompts = [p for p, k in zip(oos.prompts, oos.kinds) if k == "relation"]
    assert all(REQ.subject in p for p in relation_prompts)
    assert not any("language" in p.casefold() or "tongue" in p.casefold() for p in relation_prompts)
    assert set(generic_prompts(3)) <= set(GENERIC_PROMPTS)
    # Seeded: the same call gives the same prompts; another seed, others.
    assert other_subject_prompts(REQ, 5, seed=0) == other_subject_prompts(REQ, 5, seed=0)
    assert other_subject_prompts(REQ, 5, seed=0) != other_subject_prompts(REQ, 5, seed=1)
    assert len(other_relation_prompts(REQ, 100)) > 10
