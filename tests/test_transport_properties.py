"""Property tests of the transport maps (hypothesis): what must hold for any data."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sake_lens.errors import FitError
from sake_lens.transport import (
    DiagonalMap,
    GaussianMap,
    MeanShiftMap,
    TransportMap,
    make_map,
    map_from_config,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("SAKE_HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@st.composite
def sample_pairs(draw: st.DrawFn, min_n: int = 2, max_d: int = 10):
    """(source, target) float64 pairs: rank-deficient, outlier dims, constant rows, tiny n."""
    d = draw(st.integers(1, max_d))
    n_s, n_t = draw(st.integers(min_n, 14)), draw(st.integers(min_n, 14))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)

    def block(n: int) -> torch.Tensor:
        k = draw(st.integers(0, d))  # intrinsic dimension; 0 = all rows identical
        basis = torch.randn(k, d, generator=g, dtype=torch.float64)
        x = torch.randn(n, k, generator=g, dtype=torch.float64) @ basis
        return x * draw(st.sampled_from([1e-3, 1.0, 5.0])) + draw(st.floats(-3, 3))

    xs, xt = block(n_s), block(n_t)
    outlier = draw(st.sampled_from([1.0, 1e2, 1e3, 1e4]))
    cols = torch.randperm(d, generator=g)[: max(1, d // 8)]
    xs[:, cols] *= outlier
    xt[:, cols] *= outlier
    return xs, xt


def _affine(m: TransportMap, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) with T(x) = A x + b, read off the map through its public transform."""
    zero = torch.zeros(1, d, dtype=torch.float64)
    b = m.transform(zero)[0]
    a = (m.transform(torch.eye(d, dtype=torch.float64)) - b).T  # column j is T(e_j) - b
    return a, b


def _cov(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(dim=0)
    return xc.T @ xc / x.shape[0]


def _fit_or_fiterror(m: TransportMap, xs: torch.Tensor, xt: torch.Tensor) -> bool:
    try:
        m.fit(xs, xt)
    except FitError as err:
        assert "reg" in str(err) or "rescale" in str(err)
        return False
    return True


@SETTINGS
@given(sample_pairs())
def test_gaussian_pushforward_matches_regularised_target(pair) -> None:
    xs, xt = pair
    d = xs.shape[1]
    m = GaussianMap(reg=1e-2, storage_dtype=torch.float64)
    if not _fit_or_fiterror(m, xs, xt):
        return
    eps = m.diagnostics()["eps"]
    a, b = _affine(m, d)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.allclose(a, a.T, rtol=0, atol=1e-8 * a.abs().max())
    assert torch.linalg.eigvalsh((a + a.T) / 2).min() > 0  # symmetric positive definite
    mu_s, mu_t = xs.mean(dim=0), xt.mean(dim=0)
    tol = 1e-7 * (1 + mu_t.abs().max() + mu_s.abs().max() * a.abs().max())
    assert torch.allclose(a @ mu_s + b, mu_t, rtol=0, atol=tol)
    eye = torch.eye(d, dtype=torch.float64)
    sigma_s, sigma_t = _cov(xs) + eps * eye, _cov(xt) + eps * eye
    pushed = a @ sigma_s @ a.T
    assert torch.allclose(pushed, sigma_t, rtol=0, atol=1e-6 * sigma_t.abs().max())
    assert torch.isfinite(m.transform(xs)).all()


@SETTINGS
@given(sample_pairs())
def test_identity_when_source_equals_target(pair) -> None:
    xs, _ = pair
    m = GaussianMap(storage_dtype="float64")
    if not _fit_or_fiterror(m, xs, xs.clone()):
        return
    x = torch.randn(7, xs.shape[1], dtype=torch.float64) * xs.std(dim=0) + xs.mean(dim=0)
    assert torch.allclose(m.transform(x), x, rtol=1e-7, atol=1e-7 * x.abs().max())


@SETTINGS
@given(sample_pairs(), st.sampled_from(["gaussian", "diagonal", "mean-shift"]))
def test_inverse_and_exact_state_round_trip(pair, kind: str) -> None:
    xs, xt = pair
    m = make_map(kind)
    if not _fit_or_fiterror(m, xs, xt):
        return
    x = torch.cat([xs, xt])
    y = m.transform(x)
    scale = 1 + x.abs().max()
    # float32 basis storage (the default) bounds the round trip at ~1e-7 relative
    assert torch.allclose(
        m.inverse(y), x, rtol=0, atol=1e-5 * scale * (1 + m.diagnostics()["cond_map"])
    )
    state = m.state_dict()
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in state.values())
    restored = map_from_config(m.config(), state)
    assert type(restored) is type(m) and restored.config() == m.config()
    for dtype in (torch.float64, torch.float32):
        assert torch.equal(restored.transform(x.to(dtype)), m.transform(x.to(dtype)))
    assert restored.diagnostics() == m.diagnostics()
    assert restored.nbytes() == m.nbytes()


@SETTINGS
@given(sample_pairs(min_n=1))
def test_never_nan(pair) -> None:
    """Any input gives finite outputs or a FitError — never NaN or inf."""
    xs, xt = pair
    for m in (GaussianMap(reg=1e-6), GaussianMap(rank=2), DiagonalMap(reg=1e-6), MeanShiftMap()):
        try:
            m.fit(xs, xt)
        except FitError:
            continue
        assert torch.isfinite(m.transform(xs)).all()
        assert torch.isfinite(m.inverse(xt)).all()
        assert all(torch.isfinite(torch.tensor(v)) for v in m.diagnostics().values())


@SETTINGS
@given(sample_pairs())
def test_diagonal_map_matches_mean_and_variances(pair) -> None:
    xs, xt = pair
    m = DiagonalMap(reg=1e-2)
    if not _fit_or_fiterror(m, xs, xt):
        return
    eps = m.diagnostics()["eps"]
    y = m.transform(xs)
    scale = 1 + xt.abs().max() + xs.abs().max()
    assert torch.allclose(y.mean(dim=0), xt.mean(dim=0), rtol=0, atol=1e-9 * scale)
    var_s, var_t = xs.var(dim=0, unbiased=False), xt.var(dim=0, unbiased=False)
    # regularised: (σt/σs)² (v_s + ε) = v_t + ε
    expected = (var_t + eps) * var_s / (var_s + eps)
    assert torch.allclose(y.var(dim=0, unbiased=False), expected, rtol=1e-6, atol=1e-9 * scale**2)


@SETTINGS
@given(sample_pairs(min_n=1))
def test_mean_shift_matches_mean_keeps_covariance(pair) -> None:
    xs, xt = pair
    m = MeanShiftMap().fit(xs, xt)
    y = m.transform(xs)
    scale = 1 + xt.abs().max() + xs.abs().max()
    assert torch.allclose(y.mean(dim=0), xt.mean(dim=0), rtol=0, atol=1e-9 * scale)
    assert torch.allclose(_cov(y), _cov(xs), rtol=0, atol=1e-9 * scale**2)
    assert torch.equal(m.displacement(xs[:1])[0], m.displacement(xt[:1])[0])


def test_zero_variance_gives_a_translation() -> None:
    xs = torch.full((5, 6), 0.1, dtype=torch.float64)
    xt = torch.full((4, 6), -2.0, dtype=torch.float64)
    for kind in ("gaussian", "diagonal", "mean-shift"):
        m = make_map(kind).fit(xs, xt)
        x = torch.randn(3, 6, dtype=torch.float64)
        assert torch.allclose(m.transform(x), x - 2.1, atol=1e-12), kind


def test_rank_truncation_keeps_the_mean_and_top_directions() -> None:
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(20, 30, generator=g, dtype=torch.float64)
    xt = torch.randn(25, 30, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, 30)
    full = GaussianMap(storage_dtype="float64").fit(xs, xt)
    low = GaussianMap(rank=5, storage_dtype="float64").fit(xs, xt)
    assert low.basis_ is not None and full.eigenvalues_ is not None and low.eigenvalues_ is not None
    assert low.basis_.shape == (30, 5) and low.diagnostics()["rank"] == 5
    assert torch.allclose(low.eigenvalues_, full.eigenvalues_[:5])
    assert 0 < low.diagnostics()["truncation_error"] < 1
    assert torch.allclose(low.transform(xs).mean(0), xt.mean(0), atol=1e-10)
    zero = GaussianMap(rank=0).fit(xs, xt)  # a pure mean shift
    shift = MeanShiftMap().fit(xs, xt)
    assert torch.allclose(zero.transform(xs), shift.transform(xs), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_serving_keeps_dtype_shape_and_caches_per_dtype(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(8, 16, generator=g).to(dtype)
    xt = (torch.randn(9, 16, generator=g) + 1).to(dtype)
    m = GaussianMap().fit(xs, xt)
    h = torch.randn(2, 3, 16, generator=g).to(dtype)
    for out in (m.transform(h), m.inverse(h), m.displacement(h)):
        assert out.dtype == dtype and out.shape == h.shape and torch.isfinite(out).all()
    assert m.transform(h[0, 0]).shape == (16,)
    ref = m.transform(h.double())
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5, torch.float64: 1e-12}
    assert torch.allclose(m.transform(h).double(), ref, rtol=tol[dtype], atol=tol[dtype] * 10)
    assert torch.allclose(
        m.displacement(h).double(), ref - h.double(), rtol=0, atol=tol[dtype] * 10
    )
    assert (torch.float64, torch.device("cpu")) in m._cache  # one cast per (dtype, device)


def test_float32_storage_is_half_the_bytes() -> None:
    g = torch.Generator().manual_seed(2)
    xs, xt = torch.randn(10, 64, generator=g), torch.randn(12, 64, generator=g)
    m32 = GaussianMap().fit(xs, xt)
    m64 = GaussianMap(storage_dtype=torch.float64).fit(xs, xt)
    r = int(m32.diagnostics()["rank"])
    assert r == 10 + 12 - 2
    assert m32.nbytes() == 64 * r * 4 + 2 * 64 * 8 + r * 8
    assert m64.nbytes() == 64 * r * 8 + 2 * 64 * 8 + r * 8
    assert m32.state_dict()["basis"].dtype == torch.float32
