"""POT as the float64 oracle for the transport maps, with the same absolute regulariser."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from sake_lens.transport import DiagonalMap, GaussianMap


def _data(n_s: int, n_t: int, d: int, seed: int, outlier: float = 1.0):
    """Correlated source, shifted and rescaled target, a few outlier dimensions."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    xs = torch.randn(n_s, d, generator=g, dtype=torch.float64) @ mix + 0.5
    xt = 1.7 * torch.randn(n_t, d, generator=g, dtype=torch.float64) @ mix.T - 0.3
    xs[:, :2] *= outlier
    xt[:, :2] *= outlier
    return xs, xt


def _probe(xs: torch.Tensor, d: int, seed: int) -> torch.Tensor:
    """Random points (almost surely outside the samples' span) plus a few source samples."""
    g = torch.Generator().manual_seed(seed + 1)
    scale = xs.std(dim=0).mean().item()
    outside = 3 * scale * torch.randn(20, d, generator=g, dtype=torch.float64) + xs.mean(dim=0)
    return torch.cat([outside, xs[:5]])


def _max_rel(out: np.ndarray, ref: np.ndarray) -> float:
    return float((np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())


def _pot_map(xs: torch.Tensor, xt: torch.Tensor, eps: float):
    a, b = ot.gaussian.empirical_bures_wasserstein_mapping(
        xs.numpy(), xt.numpy(), reg=eps, bias=True
    )
    return a, b


CASES = [
    # (n_s, n_t, d, outlier, method): span path (n < d), full path (n > d), forced methods
    pytest.param(12, 15, 40, 1.0, "auto", id="span-auto"),
    pytest.param(12, 15, 40, 300.0, "auto", id="span-outliers"),
    pytest.param(80, 60, 10, 1.0, "auto", id="full-auto"),
    pytest.param(80, 60, 10, 300.0, "auto", id="full-outliers"),
    pytest.param(12, 15, 40, 1.0, "full", id="full-forced-n<d"),
    pytest.param(80, 60, 10, 1.0, "span", id="span-forced-n>d"),
]


@pytest.mark.parametrize(("n_s", "n_t", "d", "outlier", "method"), CASES)
def test_gaussian_map_matches_pot(n_s: int, n_t: int, d: int, outlier: float, method: str) -> None:
    xs, xt = _data(n_s, n_t, d, seed=n_s + d, outlier=outlier)
    m = GaussianMap(reg=1e-2, method=method, storage_dtype=torch.float64).fit(xs, xt)
    diag = m.diagnostics()
    assert diag["span_method"] == (method == "span" or (method == "auto" and n_s + n_t < d))
    a, b = _pot_map(xs, xt, diag["eps"])
    x = _probe(xs, d, seed=d)
    ref = x.numpy() @ a + b
    assert _max_rel(m.transform(x).numpy(), ref) <= 1e-9
    assert _max_rel(m.inverse(torch.from_numpy(ref)).numpy(), x.numpy()) <= 1e-9
    # the Bures-Wasserstein distance between the two regularised Gaussians
    w2 = ot.gaussian.empirical_bures_wasserstein_distance(xs.numpy(), xt.numpy(), reg=diag["eps"])
    assert diag["wasserstein2"] == pytest.approx(float(np.squeeze(w2)), rel=1e-8)


def test_float32_storage_error_is_documented_size() -> None:
    """float32 storage of the basis (the default) changes transformed points by ~1e-7."""
    xs, xt = _data(30, 30, 120, seed=3)
    m = GaussianMap(reg=1e-2).fit(xs, xt)
    a, b = _pot_map(xs, xt, m.diagnostics()["eps"])
    x = _probe(xs, 120, seed=4)
    assert _max_rel(m.transform(x).numpy(), x.numpy() @ a + b) <= 1e-6


def test_pot_linear_transport_agrees() -> None:
    """The reference code's estimator, ``ot.da.LinearTransport``, forward and inverse."""
    xs, xt = _data(10, 14, 30, seed=7, outlier=50.0)
    m = GaussianMap(reg=1e-1, storage_dtype="float64").fit(xs, xt)
    lt = ot.da.LinearTransport(reg=m.diagnostics()["eps"]).fit(Xs=xs.numpy(), Xt=xt.numpy())
    x = _probe(xs, 30, seed=8)
    assert _max_rel(m.transform(x).numpy(), lt.transform(Xs=x.numpy())) <= 1e-9
    assert _max_rel(m.inverse(x).numpy(), lt.inverse_transform(Xt=x.numpy())) <= 1e-9


def test_span_and_full_paths_agree_outside_the_span() -> None:
    xs, xt = _data(9, 7, 50, seed=11, outlier=100.0)
    span = GaussianMap(method="span", storage_dtype="float64").fit(xs, xt)
    full = GaussianMap(method="full", storage_dtype="float64").fit(xs, xt)
    x = _probe(xs, 50, seed=12)
    assert _max_rel(span.transform(x).numpy(), full.transform(x).numpy()) <= 1e-10
    assert span.basis_ is not None and span.basis_.shape[1] <= 9 + 7 - 2


def test_diagonal_map_matches_pot_on_diagonal_covariances() -> None:
    xs, xt = _data(25, 30, 12, seed=5, outlier=100.0)
    m = DiagonalMap(reg=1e-2).fit(xs, xt)
    eps = m.diagnostics()["eps"]
    cs = np.diag(xs.var(dim=0, unbiased=False).numpy() + eps)
    ct = np.diag(xt.var(dim=0, unbiased=False).numpy() + eps)
    a, b = ot.gaussian.bures_wasserstein_mapping(xs.mean(0).numpy(), xt.mean(0).numpy(), cs, ct)
    x = _probe(xs, 12, seed=6)
    assert _max_rel(m.transform(x).numpy(), x.numpy() @ a + b) <= 1e-12
