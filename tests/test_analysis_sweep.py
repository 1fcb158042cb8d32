"""Layer sweeps: the result, its JSON, its figure (synthetic), and one small real sweep (slow)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sake_lens.analysis import (
    RECOMMENDATION_RULE,
    LayerResult,
    SweepResult,
    default_sweep_prompts,
    layer_sweep,
    plot_sweep,
    sweep_page,
)
from sake_lens.analysis.sweep import sweep_sites
from sake_lens.analysis.sweep_plot import RECOMMENDED_PREFIX
from sake_lens.analysis.sweep_result import rank_key
from sake_lens.cli.sweep import parse_layers
from sake_lens.errors import DistributionError, SakeLensError, SiteError
from sake_lens.model.sites import FINAL_SITE
from sake_lens.prompts.request import EditRequest
from sake_lens.steer.edit import EditConfig

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")


def layer(
    site: str,
    layer: int | None,
    eff: float,
    gen: float,
    spec: float,
    *,
    p_new: float = 0.1,
    cond: float = 10.0,
) -> LayerResult:
    return LayerResult(
        site=site,
        layer=layer,
        efficacy=eff,
        generalisation=gen,
        specificity=spec,
        p_new_edit=p_new,
        p_new=p_new,
        prob_efficacy=eff,
        neighbour_kl=0.1,
        wasserstein2=5.0,
        wasserstein2_relative=0.2,
        cond_map=cond,
        diagnostics={"cond_map": cond, "rank": 3.0},
        predictions={"edit": [" English"], "held_out": [" the"], "neighbours": [" French"]},
    )


def synthetic_result(layers: list[LayerResult] | None = None) -> SweepResult:
    layers = layers or [
        layer("blocks.0.hook_resid_post", 0, 0, 0, 1),
        layer("blocks.1.hook_resid_post", 1, 1, 0.5, 0.5, cond=math.inf),
        layer(FINAL_SITE, None, 1, 0.5, 0.75),
    ]
    best = min(layers, key=rank_key)
    return SweepResult(
        request=REQUEST,
        model_id="fake",
        config=EditConfig(),
        layers=layers,
        recommended=best.site,
        rule=RECOMMENDATION_RULE,
        gated=False,
        purity=0.9,
        source_purity=0.8,
        n_source=10,
        n_target=12,
        prompts={"paraphrases": ["a"], "held_out": ["b"], "neighbours": ["c"]},
        baseline={"efficacy": 0.0},
        timings={"total_s": 1.0},
    )


def test_recommendation_rule_and_ties() -> None:
    result = synthetic_result()
    assert result.recommended == FINAL_SITE  # highest score
    tie = [
        layer("blocks.0.hook_resid_post", 0, 1, 0, 1, p_new=0.2, cond=50),
        layer("blocks.1.hook_resid_post", 1, 1, 0, 1, p_new=0.3, cond=100),
        layer("blocks.2.hook_resid_post", 2, 1, 0, 1, p_new=0.3, cond=20),
    ]
    assert min(tie, key=rank_key).site == "blocks.2.hook_resid_post"  # P(new), then cond


def test_result_json_round_trip(tmp_path) -> None:
    result = synthetic_result()
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)  # strict JSON: inf is written as "inf"
    assert '"cond_map": "inf"' in text
    assert data["rule"] == RECOMMENDATION_RULE and data["recommended"] == FINAL_SITE
    assert data["layers"][2]["label"] == "final" and data["layers"][2]["score"] == pytest.approx(
        0.75
    )
    result.save(tmp_path)
    back = SweepResult.load(tmp_path)
    assert back.layers == result.layers and back.recommended == result.recommended
    assert math.isinf(back.result("blocks.1.hook_resid_post").cond_map)
    with pytest.raises(SakeLensError, match="no fitted edit"):
        back.edit()
    with pytest.raises(SakeLensError, match="not a sake_lens sweep"):
        SweepResult.from_dict({"format": "x"})


def test_sweep_figure_structure() -> None:
    result = synthetic_result()
    fig = plot_sweep(result)
    names = [t.name for t in fig.data]
    assert names[:3] == [
        "efficacy (edit prompt)",
        "generalisation (held-out)",
        "specificity (neighbours kept)",
    ]
    assert "score (mean of the 3)" in names and "recommended" in names
    assert names.count("W2(source, target) / mean ‖h‖") == 1
    cond = next(t for t in fig.data if t.name == "map condition number")
    assert cond.y[1] is None  # inf is not drawn
    marks = [a.text for a in fig.layout.annotations if a.text.startswith(RECOMMENDED_PREFIX)]
    assert marks == [f"{RECOMMENDED_PREFIX}{FINAL_SITE} (score 0.75)"]
    assert any(a.text.startswith("Rule: recommended = the site") for a in fig.layout.annotations)
    assert fig.layout.meta == {"recommended": FINAL_SITE, "rule": RECOMMENDATION_RULE}
    assert list(fig.layout.xaxis3.ticktext) == ["0", "1", "final"]
    assert fig.layout.xaxis3.title.text == "layer (site)"
    assert fig.layout.yaxis3.type == "log"
    assert len([s for s in fig.layout.shapes if s.type == "rect"]) == 3  # band on every row


def test_sweep_page_without_model() -> None:
    page = sweep_page(synthetic_result())
    assert [f.name for f in page.figures] == ["layer-sweep"]
    text = page.to_markdown()
    assert "Recommended site: `ln_final.hook_out`" in text and "| final |" in text


def test_parse_layers() -> None:
    assert parse_layers(None, 30) is None and parse_layers("all", 30) is None
    assert parse_layers("0,5,10-12,-1", 30) == [0, 5, 10, 11, 12, 29]
    with pytest.raises(SiteError, match="bad --layers"):
        parse_layers("a-b", 30)


def test_default_sweep_prompts_hold_out_whole_templates() -> None:
    from sake_lens.prompts.text import split_noisy_prefix

    fit, held, near = default_sweep_prompts(REQUEST, n_paraphrases=30, n_held_out=6)
    assert len(held) == 6 and len(near) == 8 and fit
    core = {split_noisy_prefix(p, REQUEST.subject)[1] for p in fit}
    assert not core & {split_noisy_prefix(p, REQUEST.subject)[1] for p in held}
    assert REQUEST.text not in held


# ----------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_sites_and_input_errors(model) -> None:
    sites = sweep_sites(model, [0, 29], include_final=True)
    assert [s.hook for s in sites] == [
        "blocks.0.hook_resid_post",
        "blocks.29.hook_resid_post",
        FINAL_SITE,
    ]
    with pytest.raises(SiteError, match="do not exist"):
        sweep_sites(model, [30])
    with pytest.raises(SiteError, match="unknown site kinds"):
        sweep_sites(model, [1], ["resid_mid"])
    with pytest.raises(DistributionError, match="also fitting prompts"):
        layer_sweep(
            model,
            REQUEST,
            ["The native language of {} is"],
            ["Rain fell. The native language of {} is"],
            ["x is"],
            layers=[1],
        )


PARAS = [
    "The native language of {} is",
    "{}'s first language is",
    "{} grew up speaking",
    "The language {} spoke from birth is",
    "From birth, {} spoke",
    "{}'s native tongue is",
]
HELD = ["{} was raised speaking", "The first language {} learned as a child was"]
NEAR = ["The mother tongue of Pablo Picasso is", "The capital of France is"]


@pytest.fixture(scope="module")
def small_sweep(model) -> SweepResult:
    return layer_sweep(model, REQUEST, PARAS, HELD, NEAR, layers=[4, 29], batch_size=16)


@pytest.mark.slow
def test_small_real_sweep(small_sweep: SweepResult) -> None:
    result = small_sweep
    assert [r.label for r in result.layers] == ["4", "29", "final"]
    assert result.evaluation == "kv-cache"
    assert result.recommended in {r.site for r in result.layers}
    assert result.baseline["said_old_edit"]  # the model says French before the edit
    for r in result.layers:
        for v in (r.efficacy, r.generalisation, r.specificity, r.p_new, r.prob_efficacy):
            assert 0.0 <= v <= 1.0
        assert r.wasserstein2 > 0 and r.neighbour_kl >= 0 and math.isfinite(r.cond_map)
        assert len(r.predictions["held_out"]) == 2 and len(r.predictions["neighbours"]) == 2
    final = result.result(FINAL_SITE)
    assert final.efficacy == 1.0  # DESIGN.md: the final stream turns French into English
    assert final.p_new_edit > result.baseline["p_new_edit"]
    json.dumps(result.to_dict(), allow_nan=False)
    fig = plot_sweep(result)
    assert fig.layout.meta["recommended"] == result.recommended
    edit = result.edit()
    assert edit.site.hook == result.recommended and edit.source_acts is not None


@pytest.mark.slow
def test_fast_evaluation_equals_full_steered_passes(model, small_sweep: SweepResult) -> None:
    """Starting at the edited block gives what a full pass with the steering hooks gives."""
    from sake_lens.collect.activations import collect_activations
    from sake_lens.steer.hooks import steered

    prompts = [REQUEST.text, *(REQUEST.fill(p) for p in HELD), *NEAR]
    for r in small_sweep.layers:
        with steered(model, [small_sweep.edit(r.site)]):
            acts = collect_activations(model, prompts, [FINAL_SITE], predict=True)
        tokens = [model.tokenizer.decode([int(t)]) for t in acts.predictions]
        assert (
            tokens
            == r.predictions["edit"] + r.predictions["held_out"] + r.predictions["neighbours"]
        ), r.site


@pytest.mark.slow
def test_evaluation_paths_agree(model, small_sweep: SweepResult, monkeypatch) -> None:
    import sake_lens.steer.generation as generation

    monkeypatch.setattr(generation, "kv_cache_is_correct", lambda model: False)
    other = layer_sweep(model, REQUEST, PARAS, HELD, NEAR, layers=[4, 29], batch_size=16)
    assert other.evaluation == "start-at-layer"
    for a, b in zip(small_sweep.layers, other.layers):
        assert a.predictions == b.predictions, a.site
        assert a.p_new == pytest.approx(b.p_new, rel=1e-3, abs=1e-6)
        assert a.neighbour_kl == pytest.approx(b.neighbour_kl, rel=1e-2, abs=1e-5)


@pytest.mark.slow
def test_sweep_page_with_model(model, small_sweep: SweepResult, tmp_path) -> None:
    page = sweep_page(small_sweep, model=model)
    assert [f.name for f in page.figures] == ["layer-sweep", "distributions", "displacement"]
    dist = page.figures[1].figure
    assert [t.name for t in dist.data if t.mode == "markers"] == [
        "source",
        "target",
        "transported T(source)",
        "out of scope",
    ]
    disp = page.figures[2].figure
    assert [t.name for t in disp.data].count("promoted") == 1
    html = page.write_html(tmp_path / "sweep.html").read_text()
    assert html.count("plotly.js v") <= 2 and "Plotly.newPlot" in html


@pytest.mark.slow
def test_gated_sweep_uses_the_router(model) -> None:
    """With a router the evaluation runs full passes and leaves rows it rejects untouched."""

    class RejectAll:
        def route(self, acts: torch.Tensor, site: str) -> torch.Tensor:
            return torch.full((acts.shape[0],), -1, dtype=torch.long)

        def hooks(self) -> list:
            return []

    result = layer_sweep(
        model,
        REQUEST,
        PARAS[:3],
        HELD[:1],
        NEAR[:1],
        layers=[29],
        include_final=False,
        router_factory=lambda e: RejectAll(),
    )
    (r,) = result.layers
    assert result.gated and result.evaluation == "full"
    assert (
        r.specificity == 1.0 and r.efficacy == 0.0 and r.neighbour_kl == pytest.approx(0, abs=1e-6)
    )
