"""``sake-lens compare`` and :mod:`sake_lens.analysis.compare` on small hand-made result files
(no model): grouped tables, paired differences with known answers, refusals, JSON, the figure."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest

from sake_lens.analysis import compare_runs, load_run, plot_comparison
from sake_lens.analysis.compare import RunStat
from sake_lens.cli.main import main
from sake_lens.errors import DataError
from sake_lens.evaluate.metrics import METRIC_GROUPS, aggregate

CASES = ["c1", "c2", "c3", "c4", "c5"]
SHA = "ab" * 32

#: Per-record values of the reference run (one metric of each family, plus one of no family).
BASE: dict[str, list[float | None]] = {
    "efficacy": [0.0, 1.0, 1.0, 0.0, 1.0],
    "paraphrase": [0.1, 0.2, 0.3, 0.4, 0.5],
    "locality_neighbour_kl": [0.01, 0.02, 0.03, 0.04, 0.05],
    "specificity": [1.0, None, 1.0, 0.0, 1.0],
    "fluency_ppl_change": [0.1, -0.1, 0.0, 0.2, 0.3],
    "doubt_1": [0.0, 0.0, 1.0, 1.0, 1.0],
    "implication": [0.0, 0.0, 0.0, 1.0, 0.0],
    "gate_tpr": [1.0, 1.0, 1.0, 1.0, 0.0],
    "edit_applied": [1.0, 1.0, 1.0, 1.0, 1.0],
    "custom_score": [0.5, 0.5, 0.5, 0.5, 0.5],
}


def make_result(
    method: str,
    values: dict[str, list[float | None]],
    *,
    fit_s: float | None = None,
    eval_s: float = 0.5,
    cases: list[str] = CASES,
    sha: str = SHA,
    model: str = "tiny-model",
    complete: bool = True,
) -> dict[str, Any]:
    records = [
        {
            "case_id": cid,
            "status": "ok",
            "metrics": {name: vals[i] for name, vals in values.items()},
        }
        for i, cid in enumerate(cases)
    ]
    timings: dict[str, Any] = {
        "fit_s": {} if fit_s is None else dict.fromkeys(cases, fit_s),
        "eval_s": dict.fromkeys(cases, eval_s),
    }
    return {
        "format": "sake-lens-eval",
        "format_version": 1,
        "complete": complete,
        "config": {"method": method, "mode": "all", "seed": 0, "data": "dev.json"},
        "method": {"method": method},
        "model": {"id": model},
        "data": {"sha256": sha, "path": "dev.json", "n_records": len(cases)},
        "metrics": {name: f"description of {name}" for name in values},
        "records": records,
        "aggregates": aggregate([r["metrics"] for r in records], metrics=list(values)),
        "timings": timings,
    }


def shifted(values: dict[str, list[float | None]], name: str, delta: float) -> dict[str, Any]:
    out = dict(values)
    out[name] = [None if v is None else v + delta for v in values[name]]
    return out


def write(path: Path, result: dict[str, Any]) -> Path:
    path.write_text(json.dumps(result), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    a = write(tmp_path / "none.json", make_result("none", BASE))
    b = write(
        tmp_path / "sake.json", make_result("sake", shifted(BASE, "paraphrase", 0.2), fit_s=3.0)
    )
    c_values = shifted(BASE, "locality_neighbour_kl", 0.5)
    c_values["efficacy"] = [1.0, 1.0, 1.0, 1.0, 1.0]
    c = write(tmp_path / "mean-shift.json", make_result("mean-shift", c_values, fit_s=1.0))
    return [a, b, c]


# ----------------------------------------------------------------------------- tables
def test_markdown_has_every_group_and_the_stored_aggregates(files: list[Path]) -> None:
    comparison = compare_runs([load_run(p) for p in files])
    md = comparison.to_markdown()
    for group in [*METRIC_GROUPS, "other"]:
        if group == "ripple":  # only where the data has ripple probes
            assert f"## {group}\n" not in md
            continue
        assert f"## {group}\n" in md, group
    assert "| metric | none | sake | mean-shift | sake − none | mean-shift − none |" in md
    efficacy = next(line for line in md.splitlines() if line.startswith("| efficacy |"))
    assert "| 60.0 [" in efficacy and "(n=5)" in efficacy
    assert "| 100.0 [100.0, 100.0] (n=5) |" in efficacy  # mean-shift
    specificity = next(line for line in md.splitlines() if line.startswith("| specificity |"))
    assert "75.0 [" in specificity and "(n=4)" in specificity  # one record undefined
    # unscaled metrics: numbers with 3 decimals, not percentages
    kl = next(line for line in md.splitlines() if line.startswith("| locality_neighbour_kl |"))
    assert "| 0.030 [" in kl and "+0.500 [0.500, 0.500] (n=5)" in kl
    custom = next(line for line in md.splitlines() if line.startswith("| custom_score |"))
    assert "50.0 [50.0, 50.0] (n=5)" in custom


def test_paired_difference_has_the_known_answer(files: list[Path]) -> None:
    comparison = compare_runs([load_run(p) for p in files], seed=0)
    row = comparison.metric("paraphrase")
    assert row.diffs[0] is None  # the reference
    assert row.diffs[1] == RunStat(20.0, 20.0, 20.0, 5)
    assert row.diffs[2] == RunStat(0.0, 0.0, 0.0, 5)
    assert "| +20.0 [20.0, 20.0] (n=5) |" in comparison.to_markdown()
    # specificity: the pairs are the 4 records both runs define
    assert comparison.metric("specificity").diffs[1] == RunStat(0.0, 0.0, 0.0, 4)
    # efficacy: a real interval, reproducible with the seed
    eff = comparison.metric("efficacy").diffs[2]
    assert eff is not None and eff.mean == 40.0 and eff.n == 5
    assert eff.ci_low is not None and eff.ci_high is not None
    assert 0.0 <= eff.ci_low < 40.0 < eff.ci_high <= 100.0
    again = compare_runs([load_run(p) for p in files], seed=0).metric("efficacy").diffs[2]
    assert again == eff


def test_cost_rows_from_timings(files: list[Path]) -> None:
    comparison = compare_runs([load_run(p) for p in files])
    fit = comparison.metric("fit s/record")
    assert [s.mean if s else None for s in fit.stats] == [0.0, 3.0, 1.0]  # none fits nothing
    assert fit.diffs[1] == RunStat(3.0, 3.0, 3.0, 5)
    assert comparison.metric("eval s/record").stats[0] == RunStat(0.5, 0.5, 0.5, 5)
    assert [s.n if s else None for s in comparison.metric("records").stats] == [5, 5, 5]
    cost = comparison.to_markdown().split("## cost\n")[1].split("##")[0]
    assert "| fit s/record | 0.000 [0.000, 0.000] (n=5) | 3.000 [3.000, 3.000] (n=5) |" in cost
    assert "| records | 5 | 5 | 5 | — | — |" in cost


def test_reference_by_method_and_same_method_labels(tmp_path: Path, files: list[Path]) -> None:
    comparison = compare_runs([load_run(p) for p in files], reference="sake")
    assert comparison.reference == 1
    assert comparison.metric("paraphrase").diffs[0] == RunStat(-20.0, -20.0, -20.0, 5)
    twin = write(tmp_path / "sake-again.json", make_result("sake", BASE))
    both = compare_runs([load_run(files[1]), load_run(twin)])
    assert both.labels == ["sake (sake)", "sake (sake-again)"]
    with pytest.raises(DataError, match="names 2 runs"):
        compare_runs([load_run(files[1]), load_run(twin)], reference="sake")
    with pytest.raises(DataError, match="no run of method 'rome'"):
        compare_runs([load_run(p) for p in files], reference="rome")


def test_one_run_is_just_a_table(files: list[Path]) -> None:
    comparison = compare_runs([load_run(files[0])])
    md = comparison.to_markdown()
    assert "| metric | none |\n" in md
    assert "−" not in md.split("\n", 1)[1]


def test_to_dict_is_json_with_runs_and_diffs(files: list[Path]) -> None:
    data = compare_runs([load_run(p) for p in files]).to_dict()
    json.dumps(data)
    assert data["reference"] == "none"
    assert list(data["groups"]) == [*(g for g in METRIC_GROUPS if g != "ripple"), "other"]
    para = data["groups"]["generalisation"]["paraphrase"]
    assert para["unit"] == "%"
    assert para["runs"]["none"]["n"] == 5 and para["runs"]["none"]["mean"] == 30.0
    assert para["diffs"]["sake − none"] == {
        "mean": 20.0,
        "ci_low": 20.0,
        "ci_high": 20.0,
        "n": 5,
    }
    assert data["groups"]["locality"]["locality_neighbour_kl"]["unit"] == ""


def test_gzipped_files_and_in_memory_results(tmp_path: Path, files: list[Path]) -> None:
    packed = tmp_path / "sake.json.gz"
    packed.write_bytes(gzip.compress(files[1].read_bytes()))
    assert load_run(packed)["records"] == load_run(files[1])["records"]
    in_memory = make_result("sake", shifted(BASE, "paraphrase", 0.2))  # as run_evaluation returns
    comparison = compare_runs([files[0], in_memory])
    assert comparison.labels == ["none", "sake"]
    assert comparison.metric("paraphrase").diffs[1] == RunStat(20.0, 20.0, 20.0, 5)
    with pytest.raises(DataError, match="run 2 is an unfinished run"):
        compare_runs([files[0], make_result("sake", BASE, complete=False)])


# ----------------------------------------------------------------------------- refusals
def test_refuses_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read .*missing\.json"):
        load_run(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json is not JSON .*sake-lens eval --out"):
        load_run(bad)
    other = write(tmp_path / "page.json", {"format": "sake_lens.page/1"})
    with pytest.raises(DataError, match=r"page\.json is not a sake-lens evaluation result"):
        load_run(other)
    listed = write(tmp_path / "list.json", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="format None"):
        load_run(listed)


def test_refuses_an_unfinished_run(tmp_path: Path) -> None:
    result = make_result("sake", BASE, complete=False)
    result["records"] = result["records"][:2]
    result["aggregates"] = None
    path = write(tmp_path / "partial.json", result)
    with pytest.raises(DataError) as info:
        load_run(path)
    message = str(info.value)
    assert "partial.json" in message and "(2 of 5 records)" in message
    assert "finish or be resumed" in message and "\n" not in message


def test_refuses_runs_on_other_data_records_or_model(tmp_path: Path, files: list[Path]) -> None:
    ref = load_run(files[0])
    other_data = load_run(write(tmp_path / "d.json", make_result("sake", BASE, sha="cd" * 32)))
    with pytest.raises(DataError, match=r"d\.json was run on other data than .*none\.json"):
        compare_runs([ref, other_data])
    cases = ["c1", "c2", "c3", "x4", "x5"]
    fewer = load_run(write(tmp_path / "r.json", make_result("sake", BASE, cases=cases)))
    with pytest.raises(DataError, match=r"different records \(4 differ: 2 only in .*r\.json"):
        compare_runs([ref, fewer])
    other_model = load_run(write(tmp_path / "m.json", make_result("sake", BASE, model="big")))
    with pytest.raises(DataError, match=r"evaluated model 'big' but .* 'tiny-model'"):
        compare_runs([ref, other_model])


# ----------------------------------------------------------------------------- figure
def test_figure_has_one_trace_per_run(files: list[Path]) -> None:
    comparison = compare_runs([load_run(p) for p in files])
    fig = plot_comparison(comparison)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["none", "sake", "mean-shift"]
    rates = [row.name for rows in comparison.groups.values() for row in rows if not row.unscaled]
    assert list(fig.layout.yaxis.ticktext) == rates
    sake = fig.data[1]
    k = rates.index("paraphrase")
    assert sake.x[k] == pytest.approx(50.0)  # percent
    assert "n=5" in sake.text[k]
    assert fig.data[0].marker.color != sake.marker.color

    mixed = plot_comparison(comparison, ["efficacy", "locality_neighbour_kl", "fit s/record"])
    assert len(mixed.data) == 6  # two panels: rates (%) and values
    assert [t.name for t in mixed.data if t.showlegend] == ["none", "sake", "mean-shift"]
    assert list(mixed.layout.yaxis2.ticktext) == ["locality_neighbour_kl", "fit s/record"]
    with pytest.raises(DataError, match="no metric 'nope'"):
        plot_comparison(comparison, ["nope"])


def test_figure_from_paths(files: list[Path]) -> None:
    fig = plot_comparison(files[:2], metrics=["efficacy"])
    assert len(fig.data) == 2 and list(fig.data[0].y) == [pytest.approx(-0.15)]


# ----------------------------------------------------------------------------- CLI
def test_cli_prints_markdown_and_writes_files(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_html = tmp_path / "out" / "cmp.json", tmp_path / "cmp.html"
    argv = ["compare", *map(str, files), "--out-json", str(out_json), "--out-html", str(out_html)]
    assert main(argv) == 0
    md = capsys.readouterr().out
    assert "## efficacy" in md and "+20.0 [20.0, 20.0] (n=5)" in md
    assert json.loads(out_json.read_text(encoding="utf-8"))["reference"] == "none"
    html = out_html.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    assert not [p for p in tmp_path.rglob("*.tmp")]

    assert main(["compare", *map(str, files), "--json", "--reference", "sake"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reference"] == "sake"
    assert "none − sake" in data["groups"]["efficacy"]["efficacy"]["diffs"]


def test_cli_bad_file_exits_2(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("nope", encoding="utf-8")
    assert main(["compare", str(files[0]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sake-lens compare: error:") and "bad.json is not JSON" in err
    assert err.count("\n") == 1
    assert main(["compare"]) == 2  # argparse's own errors are one line too
    err = capsys.readouterr().err
    assert err.startswith("sake-lens compare: error:") and "RUN.json" in err
    assert err.count("\n") == 1 and "see `sake-lens compare --help`" in err
