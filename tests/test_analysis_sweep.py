"""Layer sweeps: the decision rule on synthetic per-edit outcomes with known answers, the JSON,
the figures, the command line (parsing, errors, one code path), and one small real sweep."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest

from sake_lens.analysis import (
    DECISION_RULE,
    SweepConfig,
    SweepResult,
    default_sweep_prompts,
    plot_sweep,
    plot_sweep_heatmap,
    sweep_page,
)
from sake_lens.analysis.sweep import layer_sweep, sweep_sites
from sake_lens.analysis.sweep_config import default_edits, sweep_requests
from sake_lens.analysis.sweep_decide import decide, summarise
from sake_lens.analysis.sweep_plot import RECOMMENDED_PREFIX
from sake_lens.analysis.sweep_result import SiteRecord
from sake_lens.cli.main import main
from sake_lens.cli.sweep import parse_floats, parse_layers
from sake_lens.errors import DistributionError, SakeLensError, SiteError
from sake_lens.model.sites import FINAL_SITE
from sake_lens.prompts.request import EditRequest
from sake_lens.steer.edit import EditConfig

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
DEFAULT = EditConfig()
A, B, C = "blocks.20.hook_resid_post", "blocks.27.hook_resid_post", FINAL_SITE


def record(
    edit: int,
    site: str,
    *,
    held: int = 6,
    loc_off: int = 10,
    loc_on: int = 10,
    eff: float = 1.0,
    alpha: float = DEFAULT.alpha,
    reg: float = DEFAULT.reg,
) -> SiteRecord:
    """One edit's outcome at ``site``: ``held`` of 6 held-out prompts say the new object (gate
    on and off alike), ``loc_*`` of 10 locality probes (5 relation, 5 neighbours) unchanged."""
    layer = None if site == FINAL_SITE else int(site.split(".")[1])
    return SiteRecord(
        edit=edit,
        site=site,
        layer=layer,
        alpha=alpha,
        reg=reg,
        n_held=6,
        n_relation=5,
        n_neighbour=5,
        efficacy_on=eff,
        efficacy_off=eff,
        held_on=held,
        held_off=held,
        relation_on=min(5, loc_on),
        relation_off=min(5, loc_off),
        neighbour_on=loc_on - min(5, loc_on),
        neighbour_off=loc_off - min(5, loc_off),
        p_new=0.5,
        fit_s=0.01,
        w2=3.0,
        w2_relative=0.3,
        cond_map=20.0,
    )


def decided(records: list[SiteRecord]):
    summaries = summarise(records, n_bootstrap=2000, seed=0)
    return summaries, decide(summaries, default_alpha=DEFAULT.alpha, default_reg=DEFAULT.reg)


# ------------------------------------------------------------------------- the decision rule
def test_a_clear_winner_is_decided_by_the_score() -> None:
    # A generalises on 0-1 of 6 held-out prompts per edit, B on all: B wins outright.
    recs = [record(e, A, held=e % 2) for e in range(10)]
    recs += [record(e, B, held=6) for e in range(10)]
    summaries, rec = decided(recs)
    assert rec.site == B and rec.decided_by == "score"
    assert rec.tied == [(B, DEFAULT.alpha, DEFAULT.reg)]
    assert "no other setting's interval reaches it" in rec.reason
    a = next(s for s in summaries if s.site == A)
    assert a["generalisation_on"].n == 60 and a["generalisation_on"].value == pytest.approx(5 / 60)
    assert a["score_on"].lo <= a["score_on"].value <= a["score_on"].hi


def test_winning_by_one_prompt_is_a_tie_and_locality_off_decides() -> None:
    # B has one more held-out prompt right than A (59 vs 60 of 60), but A damages fewer
    # prompts with the gate off: the score does not separate them, locality off does.
    recs = [record(e, A, held=5 if e == 0 else 6, loc_off=10) for e in range(10)]
    recs += [record(e, B, held=6, loc_off=2) for e in range(10)]
    summaries, rec = decided(recs)
    b = next(s for s in summaries if s.site == B)
    a = next(s for s in summaries if s.site == A)
    assert b["score_on"].value > a["score_on"].value  # B is ahead on the point estimate ...
    assert a["score_on"].hi >= b["score_on"].lo  # ... but the intervals overlap
    assert set(rec.tied) == {(A, DEFAULT.alpha, DEFAULT.reg), (B, DEFAULT.alpha, DEFAULT.reg)}
    assert rec.site == A and rec.decided_by == "locality with the gate off"
    assert "2 settings reach it and are tied" in rec.reason


def test_a_tie_on_both_goes_to_the_papers_site_at_the_default_alpha() -> None:
    recs = []
    for e in range(10):
        recs.append(record(e, B, held=6, loc_off=8 + e % 2))
        for alpha in (1.0, DEFAULT.alpha):
            recs.append(record(e, C, held=6, loc_off=8 + (e + 1) % 2, alpha=alpha))
    _, rec = decided(recs)
    assert rec.decided_by == "the paper's site"
    assert rec.candidate == (C, DEFAULT.alpha, DEFAULT.reg)
    assert "default alpha and reg" in rec.reason and rec.rule == DECISION_RULE


def test_without_the_papers_site_the_mean_score_breaks_the_tie_and_says_so() -> None:
    recs = [record(e, A, held=5 if e < 2 else 6, loc_off=9) for e in range(10)]
    recs += [record(e, B, held=6, loc_off=9) for e in range(10)]
    _, rec = decided(recs)
    assert rec.site == B and rec.decided_by == "mean score (not significant)"
    assert "do not support" in rec.reason


def test_intervals_resample_edits_and_spread_is_per_edit() -> None:
    recs = [record(e, A, held=6 if e < 5 else 0) for e in range(10)]
    (s,), _ = decided(recs)
    g = s["generalisation_on"]
    assert g.value == pytest.approx(0.5) and g.edit_min == 0 and g.edit_max == 1
    assert 0.1 < g.lo < 0.5 < g.hi < 0.9  # wide: only 10 edits, half of them fail
    same = summarise(recs, n_bootstrap=2000, seed=0)[0]["generalisation_on"]
    assert (same.lo, same.hi) == (g.lo, g.hi)  # seeded


def test_gate_on_and_off_are_kept_apart() -> None:
    r = dataclasses.replace(record(0, A), relation_off=0, neighbour_off=1)
    s = summarise([r, dataclasses.replace(r, edit=1)], n_bootstrap=200)[0]
    assert s["locality_on"].value == 1.0 and s["locality_off"].value == pytest.approx(0.1)
    assert s["relation_off"].value == 0.0 and s["neighbour_off"].value == pytest.approx(0.2)


def test_summarise_refuses_unpaired_settings() -> None:
    with pytest.raises(SakeLensError, match="not on all of"):
        summarise([record(0, A), record(1, A), record(0, B)])


# ------------------------------------------------------------------------- config and edits
def test_sweep_config_defaults_come_from_edit_config() -> None:
    cfg = SweepConfig()
    assert DEFAULT.alpha in cfg.alphas and cfg.regs == (DEFAULT.reg,)
    assert cfg.n_edits >= 10 and cfg.n_edits * cfg.n_held_out >= 50
    assert cfg.n_edits * (cfg.n_relation + cfg.n_neighbours) >= 50
    fast = SweepConfig.fast()
    assert fast.n_edits < cfg.n_edits and fast.layers is not None
    assert SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="alpha 5 is out of range"):
        SweepConfig(alphas=(1.0, 5.0))


def test_default_sweep_config_reads_the_fast_environment(monkeypatch) -> None:
    monkeypatch.setenv("SAKE_LENS_FAST", "1")
    assert SweepConfig.default() == SweepConfig.fast()
    monkeypatch.setenv("SAKE_LENS_FAST", "0")
    assert SweepConfig.default() == SweepConfig()


def test_sweep_requests_put_the_edit_first_and_skip_its_duplicate() -> None:
    bundled = default_edits()
    assert len(bundled) >= 10 and bundled[0].subject == "Danielle Darrieux"
    todo = sweep_requests(REQUEST, 4)
    assert todo[0] == REQUEST and len(todo) == 4
    assert sum(r.subject == "Danielle Darrieux" for r in todo) == 1
    with pytest.raises(SakeLensError, match="exceeds"):
        sweep_requests(REQUEST, 50)


def test_default_sweep_prompts_hold_out_whole_templates() -> None:
    from sake_lens.prompts.text import split_noisy_prefix

    fit, held, near = default_sweep_prompts(REQUEST, n_paraphrases=30, n_held_out=6)
    assert len(held) == 6 and len(near) == 8 and fit
    core = {split_noisy_prefix(p, REQUEST.subject)[1] for p in fit}
    assert not core & {split_noisy_prefix(p, REQUEST.subject)[1] for p in held}
    assert REQUEST.text not in held


# ------------------------------------------------------------------------- result and figures
def synthetic_result() -> SweepResult:
    recs = []
    for e in range(10):
        for alpha in (1.0, DEFAULT.alpha):
            for site, held, loc in ((A, 1, 10), (B, 6, 6), (C, 6, 5)):
                recs.append(record(e, site, held=held, loc_off=loc - e % 2, alpha=alpha))
    summaries, rec = decided(recs)
    return SweepResult(
        requests=sweep_requests(REQUEST, 10),
        model_id="fake",
        config=SweepConfig(alphas=(1.0, DEFAULT.alpha), layers=(20, 27)),
        edit_config=DEFAULT,
        records=recs,
        summaries=summaries,
        recommendation=rec,
        per_edit=[
            {
                "request": REQUEST.to_dict(),
                "purity": 0.9,
                "gate_accepts": {"edit": True, "held_out": 6, "relation": 0, "neighbours": 0},
                "prompts": {"held_out": ["h"] * 6, "relation": ["r"] * 5, "neighbours": ["n"] * 5},
            }
        ],
        timings={"total_s": 1.0},
    )


def test_result_json_round_trip_records_config_and_versions(tmp_path) -> None:
    result = synthetic_result()
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["format"] == "sake_lens.sweep/2" and data["versions"]["sake-lens"]
    assert data["config"]["alphas"] == [1.0, DEFAULT.alpha] and data["edit_config"]["reg"] == 100
    assert data["recommendation"]["rule"] == DECISION_RULE and data["recommendation"]["reason"]
    result.save(tmp_path)
    back = SweepResult.load(tmp_path)
    assert back.summaries == result.summaries and back.recommendation == result.recommendation
    assert back.config == result.config and back.records == result.records
    with pytest.raises(SakeLensError, match="no fitted edit"):
        back.edit()
    with pytest.raises(SakeLensError, match="not a sake_lens sweep"):
        SweepResult.from_dict({"format": "sake_lens.sweep/1"})


def test_sweep_figure_draws_intervals_choice_and_rule() -> None:
    result = synthetic_result()
    rec = result.recommendation
    fig = plot_sweep(result)
    names = [t.name for t in fig.data if t.showlegend is not False]
    for key in ("score, gate on (decides)", "locality, gate off (breaks ties)", "recommended"):
        assert key in names
    filled = [t for t in fig.data if t.fill == "tonexty"]
    assert len(filled) == 5  # a shaded interval under every deciding line
    marks = [a.text for a in fig.layout.annotations if a.text.startswith(RECOMMENDED_PREFIX)]
    assert len(marks) == 1 and result.best.label in marks[0]
    rule = next(a.text for a in fig.layout.annotations if a.text.startswith("Rule:"))
    assert "bootstrap" in rule and "locality with the gate off" in rule
    assert fig.layout.meta["recommended"] == rec.site and fig.layout.meta["alpha"] == rec.alpha
    assert f"alpha {rec.alpha:g}" in fig.layout.title.text  # the key settings in the title
    assert list(fig.layout.xaxis5.ticktext) == ["20", "27", "final"]
    for i in range(1, 6):  # no empty axis
        axis = f"y{i}" if i > 1 else "y"
        assert any(t.yaxis == axis and any(v is not None for v in t.y) for t in fig.data), i


def test_heatmap_has_every_site_and_alpha() -> None:
    result = synthetic_result()
    fig = plot_sweep_heatmap(result)
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert list(heat.x) == ["20", "27", "final"] and list(heat.y) == ["1", "2.5"]
    (box,) = [s for s in fig.layout.shapes if s.type == "rect"]
    rec = result.recommendation
    assert (box.x0 + box.x1) / 2 == result.sites.index(rec.site)
    assert (box.y0 + box.y1) / 2 == list(result.config.alphas).index(rec.alpha)


def test_sweep_page_shows_the_reason_rule_and_config() -> None:
    result = synthetic_result()
    page = sweep_page(result)
    assert [f.name for f in page.figures] == ["layer-sweep", "sweep-heatmap"]
    text = page.to_markdown()
    assert result.recommendation.reason in text and DECISION_RULE in text
    assert "**Configuration**" in text and "n_bootstrap" in text and "sake-lens" in text


# ------------------------------------------------------------------------- command line
def test_parse_layers() -> None:
    assert parse_layers(None, 30) is None and parse_layers("all", 30) is None
    assert parse_layers("0,5,10-12,-1", 30) == [0, 5, 10, 11, 12, 29]
    with pytest.raises(SiteError, match="bad --layers"):
        parse_layers("a-b", 30)


def test_parse_float_lists() -> None:
    assert parse_floats("--alpha", "1,2.5, 4", 0, 4) == (1.0, 2.5, 4.0)
    assert parse_floats("--reg", "100", 0, 1e6) == (100.0,)
    assert parse_floats("--alpha", "1,1", 0, 4) == (1.0,)


SWEEP = [
    "sweep",
    "--prompt",
    "The mother tongue of {} is",
    "--subject",
    "Danielle Darrieux",
    "--old",
    "French",
    "--new",
    "English",
]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--alpha", "1,x"], "bad --alpha '1,x': 'x' is not a number"),
        (["--alpha", "0"], "bad --alpha '0': 0 is out of range"),
        (["--alpha", "2,5.5"], "5.5 is out of range"),
        (["--alpha", ","], "comma-separated list"),
        (["--reg", "-1"], "bad --reg '-1': -1 is out of range"),
        (["--reg", "nan"], "nan is out of range"),
        (["--n-edits", "0"], "--n-edits 0 is out of range"),
    ],
)
def test_cli_refuses_bad_lists_before_loading_the_model(
    option, message, tmp_path, capsys, monkeypatch
) -> None:
    import sake_lens.cli.sweep as cli

    def no_model(args):  # the model must not be loaded for a bad option
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli, "load_from_args", no_model)
    rc = main([*SWEEP, "--out", str(tmp_path / "o"), *option])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_cli_calls_the_one_sweep_with_the_same_defaults(tmp_path, monkeypatch) -> None:
    import sake_lens.analysis.sweep as sweep_module
    import sake_lens.cli.sweep as cli

    class FakeModel:
        class cfg:  # mimics model.cfg
            n_layers = 30

    seen: dict = {}

    def fake_sweep(model, requests, config, **kw):
        seen.update(requests=requests, config=config, **kw)
        raise SakeLensError("stop here")

    monkeypatch.setattr(cli, "load_from_args", lambda args: FakeModel())
    monkeypatch.setattr(sweep_module, "layer_sweep", fake_sweep)
    monkeypatch.delenv("SAKE_LENS_FAST", raising=False)
    assert main([*SWEEP, "--out", str(tmp_path / "o")]) == 2
    assert seen["config"] == SweepConfig() and seen["edit_config"] == EditConfig()
    assert seen["requests"] == REQUEST
    seen.clear()
    args = ["--fast", "--alpha", "1,3", "--reg", "10,100", "--layers", "28,-1"]
    assert main([*SWEEP, "--out", str(tmp_path / "o"), *args]) == 2
    assert seen["config"] == SweepConfig.fast(
        alphas=(1.0, 3.0), regs=(10.0, 100.0), layers=(28, 29)
    )


def test_cli_namespace_maps_every_sweep_option() -> None:
    from sake_lens.cli.sweep import sweep_config_from_args

    ns = argparse.Namespace(
        alpha=(2.0,), reg=None, n_edits=3, n_paraphrases=None, n_held_out=2,
        n_neighbours=None, n_relation=1, seed=4, site_kind=["mlp_out"], no_final=True,
        fast=False,
    )  # fmt: skip
    cfg = sweep_config_from_args(ns)
    assert cfg == dataclasses.replace(
        SweepConfig(), alphas=(2.0,), n_edits=3, n_held_out=2, n_relation=1, seed=4,
        site_kinds=("mlp_out",), include_final=False,
    )  # fmt: skip


# ------------------------------------------------------------------------- real model
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
            SweepConfig.fast(layers=(1,), n_edits=1),
            paraphrases=["The native language of {} is"],
            held_out=["Rain fell. The native language of {} is"],
        )


@pytest.fixture(scope="module")
def small_sweep(model) -> SweepResult:
    return layer_sweep(
        model, REQUEST, SweepConfig.fast(layers=(27,), n_edits=2, n_bootstrap=200), batch_size=16
    )


@pytest.mark.slow
def test_small_real_sweep(small_sweep: SweepResult, tmp_path) -> None:
    result = small_sweep
    assert [s.label for s in result.at()] == ["27", "final"]
    assert len(result.summaries) == 2 * len(result.config.alphas)
    assert result.evaluation == "kv-cache" and len(result.requests) == 2
    assert result.per_edit[0]["said_old"]  # the model says French before the edit
    assert result.per_edit[0]["gate_accepts"]["edit"]
    for s in result.summaries:
        for key, stat in s.stats.items():
            assert 0.0 <= stat.lo <= stat.value <= stat.hi <= 1.0, key
        assert s.n_edits == 2 and s.fit_s > 0 and math.isfinite(s.cond_map)
    final = result.summary(FINAL_SITE, alpha=EditConfig().alpha)
    assert final["efficacy_off"].value == 1.0  # the final stream turns French into English
    assert final["locality_on"].value >= final["locality_off"].value  # the gate protects
    assert result.recommendation.reason.startswith(result.recommended)
    data = json.loads(result.save(tmp_path).read_text())
    assert data["config"] == result.config.to_dict() and "sake-lens" in data["versions"]
    edit = result.edit()
    assert edit.site.hook == result.recommended and edit.source_acts is not None
    assert plot_sweep(result).layout.meta["recommended"] == result.recommended
    assert plot_sweep_heatmap(result).layout.meta["alpha"] == result.recommendation.alpha


@pytest.mark.slow
def test_sweep_outcomes_equal_full_steered_passes_with_and_without_the_gate(
    model, small_sweep: SweepResult
) -> None:
    """The sweep's counts are those of full steered passes: ungated, and through the real
    fact-gate router (the gated count is derived from the gate's text decision)."""
    from sake_lens.analysis.sweep import _gate_accepts
    from sake_lens.collect.activations import collect_activations
    from sake_lens.gate.config import GateConfig
    from sake_lens.gate.router import ScopeRouter
    from sake_lens.gate.scope import fit_scope
    from sake_lens.model.tokens import starts_object
    from sake_lens.steer.hooks import steered

    info = small_sweep.per_edit[0]["prompts"]
    prompts = [REQUEST.text, *info["held_out"], *info["relation"], *info["neighbours"]]
    base = collect_activations(model, prompts, [FINAL_SITE], predict=True).predictions
    edit = small_sweep.edit(FINAL_SITE)
    scope = fit_scope(edit, GateConfig(), model=model)
    accepted = _gate_accepts(model, edit, prompts)
    n_held = len(info["held_out"])
    rec = next(
        r
        for r in small_sweep.records
        if r.edit == 0 and r.candidate == (FINAL_SITE, edit.config.alpha, edit.config.reg)
    )
    for gate, router in (("off", None), ("on", ScopeRouter([edit], [scope], model=model))):
        with steered(model, [edit], router=router):
            top = collect_activations(model, prompts, [FINAL_SITE], predict=True).predictions
        words = [model.tokenizer.decode([int(t)]) for t in top]
        said = [starts_object(w, REQUEST.new) for w in words]
        same = [int(a) == int(b) for a, b in zip(top, base)]
        assert float(said[0]) == getattr(rec, f"efficacy_{gate}")
        assert sum(said[1 : 1 + n_held]) == getattr(rec, f"held_{gate}")
        assert sum(same[1 + n_held :]) == getattr(rec, f"relation_{gate}") + getattr(
            rec, f"neighbour_{gate}"
        )
        if gate == "on":  # a prompt the gate rejects keeps the unedited next token
            assert all(s for s, a in zip(same, accepted) if not a)


@pytest.mark.slow
def test_cli_fast_sweep_writes_json_with_config_and_figures(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    args = ["--fast", "--layers", "29", "--n-edits", "2", "--alpha", "2.5", "--out", str(out)]
    assert main([*SWEEP, *args]) == 0
    printed = capsys.readouterr().out
    assert "recommended:" in printed and "why:" in printed
    data = json.loads((out / "sweep.json").read_text())
    assert data["config"]["alphas"] == [2.5] and data["config"]["layers"] == [29]
    assert data["config"]["n_edits"] == 2 and data["versions"]["sake-lens"]
    page = json.loads((out / "page.json").read_text())
    assert "layer-sweep" in json.dumps(page)
    assert (out / "sweep.html").is_file()
