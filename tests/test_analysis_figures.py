"""Analysis figures on fake activations: structure (traces, names, axes), not pixels."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from sake_lens.analysis import (
    COLORS,
    TEMPLATE_NAME,
    best_threshold,
    displacement_norms,
    fit_projection,
    logit_lens,
    map_spectrum,
    plot_displacement,
    plot_displacement_histograms,
    plot_displacement_norms,
    plot_distributions,
    plot_edit_overview,
    plot_gate_calibration,
    plot_logit_lens,
    plot_map_spectrum,
    roc_curve,
)
from sake_lens.errors import GateError, SakeLensError
from sake_lens.transport import DiagonalMap, GaussianMap, MeanShiftMap

from .helpers import correlated_samples

D = 24


@pytest.fixture(scope="module")
def clouds() -> dict[str, torch.Tensor]:
    return {
        "source": correlated_samples(30, D, seed=1),
        "target": correlated_samples(40, D, shift=2.0, seed=2),
        "out_of_scope": correlated_samples(12, D, shift=-3.0, seed=3),
    }


@pytest.fixture(scope="module")
def gmap(clouds: dict[str, torch.Tensor]) -> GaussianMap:
    return GaussianMap(reg=1e-2).fit(clouds["source"], clouds["target"])


def _names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


def test_template_is_registered_and_used(clouds, gmap) -> None:
    fig = plot_distributions(clouds["source"], clouds["target"], map=gmap)
    assert TEMPLATE_NAME in pio.templates
    assert fig.layout.template.layout.colorway[0] == COLORS["source"]


def test_distributions_pca_with_all_groups_and_hover_prompts(clouds, gmap) -> None:
    prompts = {
        "source": [f"source prompt {i} <b>" for i in range(30)],
        "target": [f"target {i}" for i in range(40)],
        "out_of_scope": [f"other {i}" for i in range(12)],
    }
    fig = plot_distributions(
        clouds["source"],
        clouds["target"],
        map=gmap,
        out_of_scope=clouds["out_of_scope"],
        prompts=prompts,
    )
    scatters = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in scatters] == [
        "source",
        "target",
        "transported T(source)",
        "out of scope",
    ]
    assert [len(t.x) for t in scatters] == [30, 40, 30, 12]
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    colors = [t.marker.color for t in scatters]
    assert colors == [COLORS[k] for k in ("source", "target", "transported", "out_of_scope")]
    assert scatters[0].hovertext[0] == "source prompt 0 &lt;b&gt;"  # escaped
    assert scatters[2].hovertext[0] == scatters[0].hovertext[0]  # T(source) keeps its prompt
    assert fig.layout.xaxis.title.text.startswith("PC1 (")
    assert fig.layout.yaxis.title.text.startswith("PC2 (")


def test_transported_cloud_lands_on_target_mean(clouds, gmap) -> None:
    groups = {"source": clouds["source"], "target": clouds["target"]}
    proj = fit_projection(groups)
    moved = proj(gmap.transform(clouds["source"])).mean(0)
    assert torch.allclose(moved, proj(clouds["target"]).mean(0), atol=1e-6)


def test_distributions_displacement_projection_and_probes(clouds, gmap) -> None:
    fig = plot_distributions(
        clouds["source"],
        clouds["target"],
        map=gmap,
        projection="displacement",
        probes=clouds["out_of_scope"][:1],
        probe_labels=["a probe"],
    )
    assert fig.layout.xaxis.title.text == "mean-shift direction"
    assert _names(fig)[-2:] == ["probe", "T(probe)"]
    with pytest.raises(SakeLensError, match="projection='displacement' needs"):
        plot_distributions(clouds["source"], clouds["target"], projection="displacement")
    with pytest.raises(ValueError, match="Unknown projection"):
        plot_distributions(clouds["source"], clouds["target"], projection="tsne")


def test_distributions_reject_bad_inputs(clouds) -> None:
    bad = clouds["source"].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(SakeLensError, match="NaN"):
        plot_distributions(bad, clouds["target"])
    with pytest.raises(SakeLensError, match="different widths"):
        plot_distributions(clouds["source"], clouds["target"][:, :5])
    with pytest.raises(ValueError, match="one prompt per row"):
        plot_distributions(clouds["source"], clouds["target"], prompts={"source": ["x"]})


def test_displacement_histograms(clouds, gmap) -> None:
    fig = plot_displacement_histograms(
        clouds["source"],
        clouds["target"],
        gmap,
        out_of_scope=clouds["out_of_scope"],
        n_directions=3,
    )
    assert all(isinstance(t, go.Histogram) for t in fig.data)
    assert len(fig.data) == 3 * 4  # 3 directions x 4 groups
    assert fig.layout.xaxis.title.text == "projection on mean-shift direction"
    assert [a.text for a in fig.layout.annotations][:2] == [
        "mean-shift direction",
        "displacement direction 2",
    ]
    assert sum(bool(t.showlegend) for t in fig.data) == 4


def test_displacement_norms_and_spectrum(clouds, gmap) -> None:
    norms = displacement_norms(gmap, clouds["source"])
    assert norms.shape == (30,) and bool((norms > 0).all())
    fig = plot_displacement_norms(gmap, clouds, prompts={"source": [str(i) for i in range(30)]})
    assert [t.type for t in fig.data] == ["box"] * 3
    assert _names(fig) == ["source", "target", "out of scope"]
    assert fig.layout.yaxis.title.text == "‖T(h) − h‖"

    spec = map_spectrum(gmap)
    assert torch.equal(spec.abs(), spec.abs().sort(descending=True).values)
    assert torch.allclose(spec.sort().values, gmap.eigenvalues_.sort().values)
    fig = plot_map_spectrum(gmap)
    assert _names(fig) == ["eigenvalues of A − I"] and len(fig.data[0].y) == len(spec)
    assert "cond_map" in fig.layout.annotations[0].text


def test_spectrum_of_other_maps(clouds) -> None:
    diag = DiagonalMap().fit(clouds["source"], clouds["target"])
    assert len(map_spectrum(diag)) == D
    shift = MeanShiftMap().fit(clouds["source"], clouds["target"])
    assert len(map_spectrum(shift)) == 0
    fig = plot_map_spectrum(shift)
    assert any("pure translation" in a.text for a in fig.layout.annotations)


class _FakeTokenizer:
    def decode(self, ids: list[int]) -> str:
        return f" tok{ids[0]}"


class _FakeModel(torch.nn.Module):
    """What the logit lens reads: W_U, ln_final, tokenizer, parameters."""

    def __init__(self, d: int, vocab: int = 50):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W_U = torch.nn.Parameter(torch.randn(d, vocab, generator=g))
        self.ln_final = torch.nn.LayerNorm(d)
        self.tokenizer = _FakeTokenizer()


def test_logit_lens_final_and_residual(gmap) -> None:
    model = _FakeModel(D)
    lens = logit_lens(model, gmap, "ln_final.hook_out", k=5)
    delta = (gmap.mean_target_ - gmap.mean_source_) @ model.W_U.detach().double()
    assert [t for t, _ in lens.promoted] == [f" tok{i}" for i in delta.topk(5).indices.tolist()]
    assert [v for _, v in lens.promoted] == pytest.approx(delta.topk(5).values.tolist())
    assert [v for _, v in lens.demoted] == pytest.approx((-delta).topk(5).values.neg().tolist())
    resid = logit_lens(model, gmap, "blocks.3.hook_resid_post", k=5)
    assert "LN" in resid.method and len(resid.demoted) == 5
    with pytest.raises(SakeLensError, match="no logit lens"):
        logit_lens(model, gmap, "embed.hook_in")
    fig = plot_logit_lens(lens)
    assert _names(fig) == ["promoted", "demoted"] and all(t.type == "bar" for t in fig.data)


def test_plot_displacement_panels(clouds, gmap) -> None:
    fig = plot_displacement(gmap)
    assert _names(fig) == ["eigenvalues of A − I"]
    fig = plot_displacement(gmap, groups=clouds, model=_FakeModel(D), site="ln_final.hook_out")
    assert [t.type for t in fig.data] == ["box"] * 3 + ["scatter", "bar", "bar"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:4] == [
        "‖T(h) − h‖ per group",
        "eigenvalues of A − I",
        "promoted tokens",
        "demoted tokens",
    ]


def test_roc_curve_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0, 1, 50), rng.normal(2, 1, 70)])
    y = np.array([True] * 50 + [False] * 70)
    curve = roc_curve(d, y)
    pairs = (d[y][:, None] < d[~y][None, :]).mean() + 0.5 * (d[y][:, None] == d[~y][None, :]).mean()
    assert curve.auc == pytest.approx(pairs)
    assert curve.fpr[0] == 0 and curve.tpr[-1] == 1
    t = best_threshold(d, y)
    fpr, tpr = curve.rates_at(t)
    assert fpr == pytest.approx(((d <= t) & ~y).sum() / 70)
    assert tpr == pytest.approx(((d <= t) & y).sum() / 50)
    json.dumps(curve.to_dict())


def test_gate_calibration_figure() -> None:
    d = torch.tensor([0.1, 0.2, 0.3, 0.9, 1.1, 1.3])
    labels = [True, True, True, False, False, False]
    fig = plot_gate_calibration(d, labels, 0.5, prompts=[f"p{i}" for i in range(6)])
    hist = [t for t in fig.data if t.type == "histogram"]
    assert [t.name for t in hist] == ["in scope", "out of scope"]
    roc = next(t for t in fig.data if t.name == "ROC")
    assert roc.xaxis == "x2"
    point = next(t for t in fig.data if t.name == "threshold")
    assert (point.x[0], point.y[0]) == (0.0, 1.0)
    assert fig.layout.xaxis2.title.text.startswith("false positive rate")
    assert any(s.type == "line" and s.x0 == 0.5 for s in fig.layout.shapes)
    assert "ROC (AUC 1.000)" in [a.text for a in fig.layout.annotations]
    auto = plot_gate_calibration(d, labels)
    assert any("Youden" in a.text for a in auto.layout.annotations)


def test_gate_calibration_errors() -> None:
    with pytest.raises(GateError, match="both in-scope"):
        plot_gate_calibration([0.1, 0.2], [True, True], 0.5)
    with pytest.raises(GateError, match="one label per distance"):
        plot_gate_calibration([0.1, 0.2], [True], 0.5)
    with pytest.raises(GateError, match="NaN"):
        roc_curve([0.1, float("nan")], [True, False])


def test_edit_overview_heatmap() -> None:
    outcomes = [[1, 0, None], [0, 1, 0.5]]
    fig = plot_edit_overview(["e1", "e2"], ["p1", "p2", "p3"], outcomes)
    (heat,) = fig.data
    assert heat.type == "heatmap" and heat.name == "outcomes"
    assert list(heat.y) == ["e1", "e2"] and list(heat.x) == ["p1", "p2", "p3"]
    assert heat.customdata[0][2] == "not run"
    assert fig.layout.xaxis.title.text == "probe" and fig.layout.yaxis.title.text == "edit"
    with pytest.raises(SakeLensError, match="expected \\(2 edits, 2 probes\\)"):
        plot_edit_overview(["e1", "e2"], ["p1", "p2"], outcomes)
