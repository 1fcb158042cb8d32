"""Map fuzzing at model widths: tiny n, d up to 600, huge outlier dimensions — finite or FitError.

tests/test_transport_properties.py fuzzes d <= 10. Here the regime of real edits: n << d, so
covariances have rank <= n and the Gaussian map works in the span of the data (DESIGN.md §2).
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sake_lens.errors import FitError
from sake_lens.transport import DiagonalMap, GaussianMap, MeanShiftMap, TransportMap

SETTINGS = settings(
    max_examples=int(os.environ.get("SAKE_HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@st.composite
def wide_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    d = draw(st.sampled_from([24, 64, 200, 576]))
    n_s, n_t = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    xs = torch.randn(n_s, d, generator=g, dtype=torch.float64) * scale
    xt = torch.randn(n_t, d, generator=g, dtype=torch.float64) * scale + draw(st.floats(-5, 5))
    if draw(st.booleans()):  # all source samples identical
        xs = xs[:1].expand(n_s, d).clone()
    outlier = draw(st.sampled_from([1.0, 1e3, 1e5]))  # Llama-style massive dimensions
    cols = torch.randperm(d, generator=g)[: draw(st.integers(1, 3))]
    xs[:, cols] *= outlier
    xt[:, cols] *= outlier
    return xs, xt


def _maps() -> list[TransportMap]:
    return [GaussianMap(), GaussianMap(rank=4), DiagonalMap(), MeanShiftMap()]


@SETTINGS
@given(wide_pairs())
def test_wide_rank_deficient_fits_are_finite_and_keep_their_properties(pair) -> None:
    xs, xt = pair
    n_fitted = 0
    for m in _maps():
        try:
            m.fit(xs, xt)
        except FitError as err:  # allowed, with advice
            assert "reg" in str(err) or "rescale" in str(err) or "sample" in str(err)
            continue
        n_fitted += 1
        out = m.transform(xs)
        assert torch.isfinite(out).all()
        assert torch.isfinite(m.inverse(xt)).all()
        assert all(torch.isfinite(torch.tensor(float(v))) for v in m.diagnostics().values())
        # The source mean goes to the target mean (every kind).
        scale = float(xt.abs().max()) + 1.0
        torch.testing.assert_close(
            m.transform(xs.mean(0, keepdim=True))[0], xt.mean(0), rtol=1e-6, atol=1e-6 * scale
        )
        # Serving in float32 stays finite and close.
        out32 = m.transform(xs.float())
        assert out32.dtype == torch.float32 and torch.isfinite(out32).all()
    if xs.shape[0] >= 2 and xt.shape[0] >= 2:
        assert n_fitted >= 1  # the mean shift always fits


@SETTINGS
@given(wide_pairs())
def test_gaussian_map_is_a_translation_away_from_the_data(pair) -> None:
    """Outside the span of the centred samples the map only translates (the isotropic part)."""
    xs, xt = pair
    d = xs.shape[1]
    m = GaussianMap()
    try:
        m.fit(xs, xt)
    except FitError:
        return
    span = torch.cat([xs - xs.mean(0), xt - xt.mean(0), torch.ones(1, d, dtype=torch.float64)])
    q, _ = torch.linalg.qr(span.T)  # (d, m) orthonormal
    v = torch.randn(d, dtype=torch.float64)
    v = v - q @ (q.T @ v)
    if v.norm() < 1e-6:
        return
    v = v / v.norm()
    mu_s = xs.mean(0)
    moved = m.transform((mu_s + v)[None])[0] - m.transform(mu_s[None])[0]
    scale = float(xs.abs().max() + xt.abs().max()) + 1.0
    torch.testing.assert_close(moved, v, rtol=0, atol=1e-6 * scale)
