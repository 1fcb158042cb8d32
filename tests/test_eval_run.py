"""The evaluation harness end to end on the real default model (slow), plus its model-free parts:
the teacher-forced scorer, the reference map, the per-record router, determinism, resuming and
the CLI.

Fitting is made cheap by asking the paraphrase generator for 4 prompts instead of the library's
default (the harness reads that default from ``make_edit``); nothing else is changed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sake_lens.errors import DataError, FitError
from sake_lens.evaluate import methods as methods_mod
from sake_lens.evaluate import runner as runner_mod
from sake_lens.evaluate.reference import PotLinearMap, reference_config
from sake_lens.evaluate.runner import EvalConfig, run_evaluation
from sake_lens.evaluate.scoring import ScoreRequest, score_rows
from sake_lens.evaluate.suite import SuiteConfig

RECORDS = [
    {
        "case_id": "darrieux",
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of Danielle Darrieux is",
        "ground_truth": "French",
        "target_new": "English",
        "rephrase_prompt": "The kettle was full. Danielle Darrieux grew up speaking",
        "locality_prompt": "The mother tongue of Jean Gabin is",
        "locality_ground_truth": "French",
    },
    {
        "case_id": "eiffel",
        "subject": "Eiffel Tower",
        "prompt": "The Eiffel Tower is located in the city of",
        "ground_truth": "Paris",
        "target_new": "Rome",
        "rephrase_prompt": "Where is the Eiffel Tower? It is in the city of",
        "locality_prompt": "The Louvre is located in the city of",
        "locality_ground_truth": "Paris",
    },
]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


@pytest.fixture
def few_paraphrases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(methods_mod, "_default_n_paraphrases", lambda: 4)


def small_config(data: Path, *, long_contexts: int = 1, **kw) -> EvalConfig:
    suite = SuiteConfig(long_contexts=long_contexts, implications=0, relations=2, texts=1)
    return EvalConfig(data=str(data), max_new_tokens=6, n_boot=200, suite=suite, **kw)


# ------------------------------------------------------------------------------ model-free
def test_pot_linear_map_matches_pot() -> None:
    import ot

    g = torch.Generator().manual_seed(0)
    xs = torch.randn(40, 6, generator=g, dtype=torch.float64)
    xt = torch.randn(30, 6, generator=g, dtype=torch.float64) * 2 + 1
    m = PotLinearMap().fit(xs, xt)
    ref = ot.da.LinearTransport(reg=1e-2).fit(Xs=xs.numpy(), Xt=xt.numpy())
    assert np.allclose(m.transform(xs).numpy(), ref.transform(Xs=xs.numpy()), atol=1e-10)
    assert torch.allclose(m.inverse(m.transform(xs)), xs, atol=1e-8)
    restored = PotLinearMap.from_state(m.config(), m.state_dict())
    assert torch.equal(restored.transform(xs), m.transform(xs))
    assert m.config() == {"kind": "pot-linear", "reg": 0.01}


def test_pot_nan_is_a_fit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ot

    class NaNTransport:
        def __init__(self, reg: float) -> None:
            pass

        def fit(self, Xs, Xt):
            self.A_ = np.full((Xs.shape[1], Xs.shape[1]), np.nan)
            self.B_ = np.zeros(Xs.shape[1])
            return self

    monkeypatch.setattr(ot.da, "LinearTransport", NaNTransport)
    with pytest.raises(FitError, match="NaN"):
        PotLinearMap().fit(torch.randn(5, 3), torch.randn(5, 3))


def test_reference_config() -> None:
    cfg = reference_config()
    assert cfg.site == "ln_final.hook_out" and cfg.map_kind == "pot-linear"
    assert cfg.distributions.target_templates == ("paper",)
    assert cfg.distributions.forced_source and not cfg.distributions.validate_targets
    assert isinstance(cfg.make_map(), PotLinearMap)
    with pytest.raises(ValueError):
        type(cfg)(map_kind="gaussian")


def test_eval_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        EvalConfig(data="x", method="rome")
    with pytest.raises(ValueError, match="mode"):
        EvalConfig(data="x", mode="some")
    cfg = small_config(tmp_path / "d.json", method="none")
    assert EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_method_overrides_change_only_what_they_name(tmp_path: Path) -> None:
    from sake_lens.evaluate.methods import MethodOverrides, method_description

    plain = method_description("sake")
    ov = MethodOverrides(
        n_paraphrases=12,
        edit={"alpha": 1.0, "distributions": {"target_templates": ["fact"]}},
        gate={"fpr": 0.05},
    )
    desc = method_description("sake", ov)
    assert desc["n_paraphrases"] == 12 and plain["n_paraphrases"] != 12
    assert desc["edit_config"]["alpha"] == 1.0
    assert desc["edit_config"]["distributions"]["target_templates"] == ("fact",)
    # untouched fields keep the method's values (nested ones too)
    assert desc["edit_config"]["reg"] == plain["edit_config"]["reg"]
    assert desc["edit_config"]["distributions"]["forced_source"] is True
    assert desc["gate"]["fpr"] == 0.05 and desc["gate"]["text"] == plain["gate"]["text"]
    # the reference keeps its fixed threshold under a gate override
    ref = method_description("sake-reference", MethodOverrides(gate={"text": "full"}))
    assert ref["gate"]["threshold"] == 1.0 and ref["gate"]["text"] == "full"
    for bad, match in (
        ({"edit": {"alpah": 1.0}}, "Unknown EditConfig fields"),
        ({"gate": {"fpr": 2.0}}, "fpr"),
        ({"n_paraphrases": 0}, "n_paraphrases"),
    ):
        with pytest.raises(ValueError, match=match):
            MethodOverrides(**bad)
    cfg = small_config(tmp_path / "d.json", method="sake", overrides=ov)
    assert EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "overrides" not in small_config(tmp_path / "d.json").to_dict()  # old hashes hold
    with pytest.raises(ValueError, match="fits no edit"):
        small_config(tmp_path / "d.json", method="none", overrides=ov)


def test_eval_cli_ablation_flags() -> None:
    import argparse

    from sake_lens.cli import eval as eval_cli
    from sake_lens.errors import SakeLensError

    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    base = ["eval", "--data", "d.json", "--mode", "all"]
    args = parser.parse_args(
        [*base, "--paraphrases", "8", "--edit-config", '{"alpha": 1.2}', "--gate-config", "{}"]
    )
    cfg = eval_cli.config_from_args(args)
    assert cfg.overrides.n_paraphrases == 8 and cfg.overrides.edit == {"alpha": 1.2}
    for flag, value, match in (
        ("--edit-config", "{alpha: 1}", "not valid JSON"),
        ("--gate-config", "[1]", "must be a JSON object"),
        ("--edit-config", '{"alpha": 9}', "alpha"),
    ):
        with pytest.raises(SakeLensError, match=match):
            eval_cli.config_from_args(parser.parse_args([*base, flag, value]))


@pytest.mark.parametrize(
    ("records", "message"),
    [("5:2", "START < STOP"), ("x", "START:STOP"), ("0:99", "outside")],
)
def test_eval_refuses_a_bad_records_range_before_loading_the_model(
    data_file: Path, records: str, message: str, monkeypatch, capsys
) -> None:
    from sake_lens.cli import eval as eval_cli
    from sake_lens.cli.main import main

    def no_model(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(eval_cli, "load_from_args", no_model)
    argv = ["eval", "--data", str(data_file), "--records", records, "--method", "none"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own error for a malformed value (usage + one line)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_in_context_all_mode_states_the_retrieved_fact(data_file: Path) -> None:
    """In ``all`` mode each probe gets the fact its prompt is routed to (real MiniLM gates)."""
    from sake_lens.evaluate.data import load_records
    from sake_lens.evaluate.methods import IN_CONTEXT_PREFIX, prepare_treatment

    records = load_records(data_file).records
    facts = [IN_CONTEXT_PREFIX.format(prompt=r.request.text, new=r.request.new) for r in records]
    single = prepare_treatment(None, "in-context", "single", records)
    assert single.prefixes_for([1, 0], ["a", "b"]) == [facts[1], facts[0]]
    every = prepare_treatment(None, "in-context", "all", records)
    probes = [
        "The kettle was full. Danielle Darrieux grew up speaking",  # Darrieux, after a lead-in
        "Where is the Eiffel Tower? It is in the city of",
        "The Louvre is located in the city of",  # a neighbour: no fact
        "A good recipe for pancakes needs",
    ]
    assert every.prefixes_for([0, 0, 0, 0], probes) == [facts[0], facts[1], "", ""]
    assert not every.steers


def test_own_row_router_keeps_each_row_to_its_own_edit() -> None:
    """Single mode batches records together: a row may only reach its own record's edit."""
    from types import SimpleNamespace

    from sake_lens.evaluate.methods import Treatment, _OwnRowRouter
    from sake_lens.gate import Calibration, GateConfig, Scope, ScopeStats

    site = "ln_final.hook_out"
    cfg = GateConfig(kind="hidden")
    scopes = [
        Scope(
            cfg,
            site,
            ScopeStats.fit(torch.full((3, 4), c), "euclidean"),
            Calibration(1.0, 0.05, 0.0),
        )
        for c in (0.0, 10.0)
    ]
    edits = [SimpleNamespace(site=SimpleNamespace(hook=site)) for _ in scopes]
    router = _OwnRowRouter(edits, scopes)
    treatment = Treatment("sake", "single", ["", "", ""], [0, 1, -1], router=router)
    treatment.hooks = [("x", None)]  # steering is active
    acts = torch.tensor([[10.0] * 4, [10.0] * 4, [0.0] * 4, [10.0] * 4], dtype=torch.float64)
    treatment.before_batch([0, 1, 0, 2])  # record 2 has no edit
    decisions = router.route(acts, site)
    assert decisions.tolist() == [-1, 1, 0, -1]  # row 0 is near edit 1 but belongs to edit 0
    assert treatment.fired(int(decisions[1]), 1) == (True, True)
    assert treatment.fired(int(decisions[0]), 0) == (False, False)
    assert Treatment("none", "single", [""], [-1]).fired(None, 0) == (None, None)


# ------------------------------------------------------------------------------ real model
@pytest.mark.slow
def test_scorer_matches_step_by_step_logprobs(model) -> None:
    from sake_lens.collect.activations import collect_activations

    prompt, obj = "The mother tongue of Danielle Darrieux is", " Christianity and"
    ids = model.tokenizer.encode(obj, add_special_tokens=False)
    assert len(ids) >= 2
    expected = 0.0
    for k in range(len(ids)):
        text = prompt + model.tokenizer.decode(ids[:k])
        acts = collect_activations(model, [text], ["ln_final.hook_out"], keep_logits=True)
        expected += float(torch.log_softmax(acts.logits_last[0].double(), -1)[ids[k]])
    others = [ScoreRequest("Paris is the capital of", (" France",)), ScoreRequest("Hi", ())]
    together = score_rows(model, [*others, ScoreRequest(prompt, (obj, " French"))])
    alone = score_rows(model, [ScoreRequest(prompt, (obj, " French"))])
    assert together[2].logprobs[0] == pytest.approx(expected, abs=2e-3)
    assert together[2].logprobs == pytest.approx(alone[0].logprobs, abs=2e-3)
    assert together[2].greedy.strip() == "French" and together[2].n_tokens[1] == 1
    assert together[1].logprobs == () and math.isfinite(together[0].logprobs[0])


def _spy_records(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Wrap ``runner.<name>(model, records, ...)``; the returned list collects the case ids."""
    seen: list[str] = []
    original = getattr(runner_mod, name)

    def spy(model, records, *args, **kw):
        seen.extend(r.case_id for r in records)
        return original(model, records, *args, **kw)

    monkeypatch.setattr(runner_mod, name, spy)
    return seen


@pytest.mark.slow
def test_determinism_and_resume(
    model, data_file: Path, tmp_path: Path, few_paraphrases, monkeypatch
) -> None:
    cfg = small_config(data_file, method="sake", chunk_size=2, long_contexts=0)
    a = run_evaluation(model, cfg, out=tmp_path / "a.json", progress=False)
    b = run_evaluation(model, cfg, out=tmp_path / "b.json", progress=False)
    on_disk = json.loads((tmp_path / "a.json").read_text())
    for r in (a, b, on_disk):
        r.pop("timings")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.loads(json.dumps(a)) == on_disk
    assert a["complete"] and [r["case_id"] for r in a["records"]] == ["darrieux", "eiffel"]
    assert set(a["aggregates"]) == set(a["metrics"])
    assert a["records"][0]["edit"]["n_paraphrases"] >= 2

    # resume: a partial file with one finished record evaluates only the other one
    partial = json.loads((tmp_path / "b.json").read_text())
    partial["records"] = partial["records"][:1]
    partial["complete"] = False
    (tmp_path / "b.json").write_text(json.dumps(partial))
    seen = _spy_records(monkeypatch, "_evaluate_chunk")
    c = run_evaluation(model, cfg, out=tmp_path / "b.json", progress=False)
    assert seen == ["eiffel"]
    assert c["complete"] and [r["case_id"] for r in c["records"]] == ["darrieux", "eiffel"]
    assert c["records"][0] == a["records"][0]

    # another configuration refuses to mix its results into the file
    with pytest.raises(DataError, match="another configuration"):
        run_evaluation(model, small_config(data_file, method="none"), out=tmp_path / "b.json")


@pytest.mark.slow
def test_a_new_result_format_reuses_saved_fits(
    model, data_file: Path, tmp_path: Path, few_paraphrases, monkeypatch
) -> None:
    """Fits are keyed by what fitting depends on; records also by the result format."""
    cfg = small_config(data_file, method="sake", mode="all", long_contexts=0)
    out = tmp_path / "run.json"
    first = run_evaluation(model, cfg, out=out, progress=False)
    fits = json.loads((tmp_path / "run.json.edits" / "fits.json").read_text())
    assert fits["config_hash"] != first["config_hash"] and len(fits["fits"]) == 2

    fitted = _spy_records(monkeypatch, "fit_all")
    monkeypatch.setattr(runner_mod, "FORMAT_VERSION", runner_mod.FORMAT_VERSION + 1)
    with pytest.raises(DataError, match="another configuration"):
        run_evaluation(model, cfg, out=out, progress=False)  # old records are not mixed in
    moved = tmp_path / "moved.json"
    (tmp_path / "run.json.edits").rename(tmp_path / "moved.json.edits")
    second = run_evaluation(model, cfg, out=moved, progress=False)
    assert fitted == [] and second["config_hash"] != first["config_hash"]
    assert [r["metrics"] for r in second["records"]] == [r["metrics"] for r in first["records"]]


@pytest.mark.slow
def test_cli_smoke(
    model, data_file: Path, tmp_path: Path, few_paraphrases, monkeypatch, capsys
) -> None:
    """Two records through ``sake-lens eval`` with the paper's recipe (< 60 s)."""
    from sake_lens.cli import eval as eval_cli
    from sake_lens.cli.main import main

    monkeypatch.setattr(eval_cli, "load_from_args", lambda args: model)
    out = tmp_path / "ref.json"
    argv = ["eval", "--data", str(data_file), "--n", "2", "--method", "sake-reference"]
    argv += ["--out", str(out), "--no-progress", "--no-generation"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| efficacy |" in text and "sake-reference (single mode), 2 records" in text
    result = json.loads(out.read_text())
    assert result["method"]["gate"]["threshold"] == 1.0
    for record in result["records"]:
        assert record["status"] in ("ok", "edit_failed")
        if record["status"] == "ok":
            assert record["edit"]["map"] == "pot-linear"
        kinds = {p["kind"] for p in record["probes"]}
        assert {"edit", "neighbourhood", "doubt", "long_context"} <= kinds
        assert kinds & {"paraphrase", "generation_prompt"}  # the rephrase, classified
        assert all(p["fired"] is not None for p in record["probes"])
