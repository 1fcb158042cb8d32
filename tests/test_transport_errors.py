"""Every error path of the transport maps names the problem and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterator

import jaxtyping
import pytest
import torch

from sake_lens.errors import FitError, SakeLensError
from sake_lens.transport import (
    DiagonalMap,
    GaussianMap,
    MeanShiftMap,
    make_map,
    map_from_config,
)

ALL_KINDS = ["gaussian", "diagonal", "mean-shift"]


@pytest.fixture(autouse=True)
def _own_validation_only() -> Iterator[None]:
    """Switch off jaxtyping's runtime checks (if the test run installs them) in this module.

    These tests pin the messages sake_lens itself raises for bad inputs — what users see — and
    a runtime type checker would reject the same inputs first with its own message.
    """
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


def _pair(n_s: int = 6, n_t: int = 7, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_s, d, generator=g), torch.randn(n_t, d, generator=g) + 1


def test_fit_error_is_a_sake_lens_error() -> None:
    assert issubclass(FitError, SakeLensError)


@pytest.mark.parametrize("kind", ["gaussian", "diagonal"])
@pytest.mark.parametrize("side", ["source", "target"])
def test_one_sample_names_count_and_fix(kind: str, side: str) -> None:
    xs, xt = _pair()
    one = {"source": (xs[:1], xt), "target": (xs, xt[:1])}[side]
    with pytest.raises(FitError, match=rf"{side} has 1 sample; need ≥ 2 .*add paraphrases"):
        make_map(kind).fit(*one)


def test_mean_shift_needs_one_sample_and_refuses_zero() -> None:
    xs, xt = _pair()
    MeanShiftMap().fit(xs[:1], xt[:1])
    with pytest.raises(FitError, match=r"source has 0 samples; need ≥ 1"):
        MeanShiftMap().fit(xs[:0], xt)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_are_listed(kind: str, bad: float) -> None:
    xs, xt = _pair(n_s=12)
    xs[3, 1] = bad
    xs[7, 0] = bad
    with pytest.raises(FitError, match=r"non-finite .* source activations at rows \[3, 7\]") as e:
        make_map(kind).fit(xs, xt)
    assert "drop those prompts" in str(e.value)


def test_many_non_finite_rows_are_summarised() -> None:
    xs, xt = _pair(n_s=40)
    xt = torch.full((30, 5), math.nan)
    with pytest.raises(FitError, match=r"target activations at rows \[0, 1, .*30 rows in all"):
        GaussianMap().fit(xs, xt)


def test_float16_overflow_is_reported_as_non_finite() -> None:
    xs, xt = _pair()
    xs16 = (xs * 1e5).half()  # overflows float16 to inf
    with pytest.raises(FitError, match="collect in float32 if float16 overflowed"):
        GaussianMap().fit(xs16, xt.half())


@pytest.mark.parametrize(
    ("source", "target", "pattern"),
    [
        (torch.zeros(5), torch.zeros(5, 5), r"source must be 2-D .*got shape \(5,\)"),
        (torch.zeros(4, 5), torch.zeros(2, 3, 5), r"target must be 2-D .*got shape \(2, 3, 5\)"),
        (torch.zeros(4, 5), torch.zeros(4, 6), r"shape \(4, 5\) and target \(4, 6\).*same site"),
        (torch.zeros(4, 0), torch.zeros(4, 0), r"d_model is 0"),
        (torch.zeros(4, 5, dtype=torch.int64), torch.zeros(4, 5), r"dtype torch.int64.*float"),
        ([[0.0] * 5] * 4, torch.zeros(4, 5), r"torch.Tensor.*got list.*torch.as_tensor"),
    ],
)
def test_bad_shapes_and_types_are_named(source, target, pattern: str) -> None:
    for kind in ALL_KINDS:
        with pytest.raises(FitError, match=pattern):
            make_map(kind).fit(source, target)


def test_unregularised_rank_deficient_fit_says_raise_reg() -> None:
    xs, xt = _pair(n_s=4, n_t=4, d=20)
    with pytest.raises(FitError, match=r"condition number inf after reg=0 .*raise reg"):
        GaussianMap(reg=0.0).fit(xs, xt)
    with pytest.raises(FitError, match=r"condition number .* after reg=1e-14 .*raise reg"):
        GaussianMap(reg=1e-14).fit(xs, xt)
    with pytest.raises(FitError, match=r"variances span a ratio of .* after reg=0 .*raise reg"):
        DiagonalMap(reg=0.0).fit(xs, torch.ones_like(xt))


@pytest.mark.parametrize("magnitude", [1e200, 1e-200])
def test_extreme_magnitudes_say_rescale(magnitude: float) -> None:
    xs, xt = _pair()
    with pytest.raises(FitError, match=r"magnitude .* rescale them"):
        GaussianMap().fit(xs.double() * magnitude, xt.double() * magnitude)


def test_huge_outlier_dimensions_fit_where_pot_gave_nan() -> None:
    xs, xt = _pair(n_s=20, n_t=20, d=60)
    xs[:, :3] *= 1000.0
    xt[:, :3] *= 1000.0
    for kind in ALL_KINDS:
        m = make_map(kind).fit(xs, xt)
        assert torch.isfinite(m.transform(xs)).all()
        assert all(math.isfinite(v) for v in m.diagnostics().values())


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unfitted_map_says_call_fit(kind: str) -> None:
    m = make_map(kind)
    assert not m.is_fitted
    for call in (lambda: m.transform(torch.zeros(5)), m.state_dict, m.diagnostics, m.nbytes):
        with pytest.raises(FitError, match=r"not fitted; call \.fit\(source, target\)"):
            call()
    with pytest.raises(FitError, match="not fitted"):
        _ = m.d_model


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_serving_input_is_checked(kind: str) -> None:
    m = make_map(kind).fit(*_pair())
    for method in (m.transform, m.inverse, m.displacement):
        with pytest.raises(
            ValueError, match=r"shape \(2, 4\), but the map was fitted at d_model=5"
        ):
            method(torch.zeros(2, 4))
        with pytest.raises(ValueError, match=r"shape \(\)"):
            method(torch.tensor(1.0))
        with pytest.raises(TypeError, match="floating-point"):
            method(torch.zeros(2, 5, dtype=torch.int32))
        with pytest.raises(TypeError, match=r"torch\.Tensor"):
            method([0.0] * 5)


def test_constructor_arguments_list_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"reg must be ≥ 0"):
        GaussianMap(reg=-1.0)
    with pytest.raises(ValueError, match=r"reg must be a finite float"):
        DiagonalMap(reg=math.nan)
    with pytest.raises(ValueError, match=r"rank must be None or an int ≥ 0"):
        GaussianMap(rank=-2)
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'span', 'full'\)"):
        GaussianMap(method="svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"storage_dtype must be one of \['float32', 'float64'\]"):
        GaussianMap(storage_dtype=torch.float16)


def test_unknown_kind_lists_allowed_kinds() -> None:
    with pytest.raises(ValueError, match=r"'gauss'.*\['mean-shift', 'diagonal', 'gaussian'\]"):
        make_map("gauss")
    with pytest.raises(ValueError, match=r"bad arguments for make_map\('mean-shift'"):
        make_map("mean-shift", reg=1.0)
    with pytest.raises(ValueError, match="allowed kinds"):
        map_from_config({"kind": "sinkhorn"}, {})
    with pytest.raises(ValueError, match="'kind' key"):
        map_from_config({"reg": 1.0}, {})


def test_restoring_a_bad_state_names_the_tensor() -> None:
    m = GaussianMap().fit(*_pair())
    config, state = m.config(), m.state_dict()
    with pytest.raises(FitError, match=r"state lacks 'basis'"):
        map_from_config(config, {k: v for k, v in state.items() if k != "basis"})
    with pytest.raises(FitError, match=r"state\['eigenvalues'\] has shape .* inconsistent with r="):
        map_from_config(config, {**state, "eigenvalues": torch.zeros(99, dtype=torch.float64)})
    with pytest.raises(FitError, match=r"state\['mean_source'\] must be a float tensor"):
        map_from_config(config, {**state, "mean_source": torch.zeros(5, dtype=torch.int64)})
    with pytest.raises(FitError, match=r"state\['basis'\] is not finite"):
        map_from_config(config, {**state, "basis": state["basis"] * math.nan})
    with pytest.raises(ValueError, match=r"kind='diagonal'; GaussianMap needs kind='gaussian'"):
        GaussianMap.from_state({**config, "kind": "diagonal"}, state)
    with pytest.raises(ValueError, match=r"bad config for GaussianMap"):
        map_from_config({**config, "ranks": 3}, state)


def test_non_invertible_map_says_so() -> None:
    m = GaussianMap().fit(*_pair())
    state = m.state_dict()
    state["eigenvalues"] = torch.full_like(state["eigenvalues"], -1.0)  # A = 0 on the basis
    broken = map_from_config(m.config(), state)
    with pytest.raises(FitError, match=r"not invertible.*refit with a larger reg"):
        broken.inverse(torch.zeros(5))
