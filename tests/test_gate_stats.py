"""Scope statistics and stacked distances: Ledoit–Wolf, low-rank Mahalanobis, vectorisation."""

from __future__ import annotations

import math

import pytest
import torch

from sake_lens.errors import GateError
from sake_lens.gate import GateConfig, ScopeStats, StackedStats, gate_score, ledoit_wolf_shrinkage
from sake_lens.gate.config import GATE_METRICS


def _samples(n: int, d: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift


def test_ledoit_wolf_matches_scikit_learn() -> None:
    covariance = pytest.importorskip("sklearn.covariance")
    for n, d in ((10, 30), (40, 8), (5, 200)):
        x = _samples(n, d, seed=n)
        xc = x - x.mean(0)
        expected = covariance.ledoit_wolf_shrinkage(xc.numpy(), assume_centered=True)
        assert ledoit_wolf_shrinkage(xc) == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shrinkage", [None, 0.3])
def test_low_rank_mahalanobis_equals_explicit_inverse(shrinkage: float | None) -> None:
    n, d = 12, 20  # n < d: the sample covariance is singular, shrinkage makes it invertible
    x = _samples(n, d, seed=1)
    stats = ScopeStats.fit(x, "mahalanobis", shrinkage=shrinkage, max_rank=d)
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    gamma = stats.shrinkage
    if shrinkage is not None:
        assert gamma == shrinkage
    sigma = (1 - gamma) * s + gamma * torch.trace(s) / d * torch.eye(d, dtype=torch.float64)
    q = _samples(7, d, seed=2, shift=0.5)
    diff = q - x.mean(0)
    expected = torch.einsum("bi,ij,bj->b", diff, torch.linalg.inv(sigma), diff).sqrt()
    got = StackedStats([stats]).distances(q)[:, 0]
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_truncated_rank_keeps_the_form_low_rank_plus_isotropic() -> None:
    x = _samples(30, 50, seed=3)
    stats = ScopeStats.fit(x, "mahalanobis", max_rank=4)
    assert stats.basis.shape == (50, 4)
    assert bool((stats.weights >= 0).all() and (stats.weights < 1).all())
    d = StackedStats([stats]).distances(_samples(5, 50, seed=4))
    assert bool(torch.isfinite(d).all())


@pytest.mark.parametrize("metric", GATE_METRICS)
def test_stacked_distances_equal_one_edit_at_a_time(metric: str) -> None:
    # Edits with different sample counts (so different ranks and anchor counts, zero-padded).
    stats = [ScopeStats.fit(_samples(3 + 4 * i, 16, seed=i, shift=i), metric) for i in range(6)]
    q = _samples(9, 16, seed=99, shift=2.0)
    stacked = StackedStats(stats).distances(q)
    assert stacked.shape == (9, 6)
    for i, s in enumerate(stats):
        torch.testing.assert_close(stacked[:, i], StackedStats([s]).distances(q)[:, 0])


def test_nearest_is_zero_on_its_own_samples_and_cosine_in_range() -> None:
    x = _samples(5, 8, seed=5)
    assert torch.allclose(
        StackedStats([ScopeStats.fit(x, "nearest")]).distances(x)[:, 0],
        torch.zeros(5, dtype=torch.float64),
    )
    cos = StackedStats([ScopeStats.fit(x, "cosine")]).distances(_samples(50, 8, seed=6))
    assert bool(((cos >= 0) & (cos <= 2)).all())


@pytest.mark.parametrize("metric", GATE_METRICS)
def test_bad_rows_give_inf_never_nan(metric: str) -> None:
    stats = ScopeStats.fit(_samples(6, 8), metric)
    q = _samples(3, 8, seed=7)
    q[1, 2] = float("nan")
    q[2, 0] = float("inf")
    d = StackedStats([stats]).distances(q)[:, 0]
    assert not bool(torch.isnan(d).any())
    assert math.isfinite(d[0]) and d[1] == math.inf and d[2] == math.inf
    score = gate_score(d, 1.0)
    assert bool(((score >= 0) & (score <= 1)).all())
    assert score[1] == 0 and score[2] == 0


@pytest.mark.parametrize("metric", GATE_METRICS)
def test_single_sample_scope_is_finite(metric: str) -> None:
    stats = ScopeStats.fit(torch.ones(1, 8, dtype=torch.float64), metric)
    d = StackedStats([stats]).distances(_samples(4, 8))
    assert bool(torch.isfinite(d).all())


def test_fit_refuses_non_finite_or_empty_samples() -> None:
    x = _samples(4, 8)
    x[0, 0] = float("nan")
    with pytest.raises(GateError, match="NaN"):
        ScopeStats.fit(x, "euclidean")
    with pytest.raises(GateError, match="at least one"):
        ScopeStats.fit(torch.empty(0, 8), "euclidean")
    with pytest.raises(GateError, match="Unknown gate metric"):
        ScopeStats.fit(_samples(4, 8), "manhattan")


def test_stacking_refuses_mixed_metrics() -> None:
    with pytest.raises(GateError, match="group them"):
        StackedStats(
            [ScopeStats.fit(_samples(4, 8), "euclidean"), ScopeStats.fit(_samples(4, 8), "cosine")]
        )


@pytest.mark.parametrize("metric", GATE_METRICS)
def test_state_round_trip_is_exact(metric: str) -> None:
    stats = ScopeStats.fit(_samples(10, 12), metric)
    back = ScopeStats.from_state(metric, stats.state_dict(), stats.tau, stats.shrinkage)
    q = _samples(5, 12, seed=8)
    assert torch.equal(StackedStats([stats]).distances(q), StackedStats([back]).distances(q))


def test_thousand_edits_route_in_one_operation() -> None:
    # 1000 Mahalanobis edits at d=64: one stacked call, and it agrees with per-edit distances.
    stats = [
        ScopeStats.fit(_samples(6, 64, seed=i, shift=0.1 * i), "mahalanobis") for i in range(1000)
    ]
    stacked = StackedStats(stats)
    assert stacked.basis.shape[0] == 64  # (f, N*r): no d x d matrix per edit
    q = _samples(4, 64, seed=5000, shift=3.0)
    d = stacked.distances(q)
    for i in (0, 417, 999):
        torch.testing.assert_close(d[:, i], StackedStats([stats[i]]).distances(q)[:, 0])


def test_gate_config_validation_and_round_trip() -> None:
    cfg = GateConfig(kind="hidden", metric="mahalanobis", layer=12, fpr=0.02)
    assert cfg.layer == "blocks.12.hook_resid_post"
    assert GateConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.feature("ln_final.hook_out") == "blocks.12.hook_resid_post"
    assert GateConfig().feature("ln_final.hook_out") == "fact"
    emb = GateConfig(kind="embedding")
    assert emb.feature("ln_final.hook_out") == "embedding@quotes"
    assert GateConfig(kind="embedding", text="sentences").feature("x") == "embedding@sentences"
    assert GateConfig(kind="embedding", text="both").feature("x") == "embedding+last"
    assert GateConfig(kind="embedding", text="full").feature("x") == "embedding"
    for bad in (
        {"kind": "bag-of-words"},
        {"metric": "manhattan"},
        {"fpr": 0.0},
        {"fpr": 1.5},
        {"threshold": float("nan")},
        {"threshold": -1.0},
        {"shrinkage": 2.0},
        {"layer": 3},  # layer needs kind="hidden"
        {"text": "first-word"},
    ):
        with pytest.raises(ValueError):
            GateConfig(**bad)
    with pytest.raises(ValueError, match="Unknown GateConfig fields"):
        GateConfig.from_dict({"kind": "embedding", "colour": "red"})
