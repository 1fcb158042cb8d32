"""Data-parallel evaluation: shards, the merge, resuming with another number of processes, and
a real two-process ``torchrun`` run whose records equal a single process's (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sake_lens.cli.main import main
from sake_lens.errors import DataError
from sake_lens.evaluate.distributed import Shard, shard_files
from sake_lens.evaluate.runner import EvalConfig, run_evaluation
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
    {
        "case_id": "toyota",
        "subject": "Toyota",
        "prompt": "Toyota's headquarters are in",
        "ground_truth": "Japan",
        "target_new": "Germany",
        "rephrase_prompt": "Toyota is headquartered in",
        "locality_prompt": "Honda's headquarters are in",
        "locality_ground_truth": "Japan",
    },
]


def _no_wait() -> None:
    """A barrier for ranks run one after another in one process."""


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


def _config(data: Path, **kw: Any) -> EvalConfig:
    suite = SuiteConfig(long_contexts=0, implications=0, relations=2, texts=1)
    return EvalConfig(data=str(data), max_new_tokens=4, n_boot=100, suite=suite, **kw)


def _outcomes(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "timings"}


def _assert_close(a: Any, b: Any, where: str = "") -> None:
    """Equal, except floats within 1e-5 (batch composition moves log-probabilities ~1e-6)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (where, a, b)
    else:
        assert a == b, (where, a, b)


# ------------------------------------------------------------------------------ model-free
def test_round_robin_shares_and_shard_paths(tmp_path: Path) -> None:
    shards = [Shard(r, 3, _no_wait) for r in range(3)]
    shares = [s.mine(8) for s in shards]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert sorted(i for share in shares for i in share) == list(range(8))
    out = tmp_path / "run.json"
    for s in shards:
        s.path(out).write_text("{}")
    (tmp_path / "run.json.edits").mkdir()
    (tmp_path / "other.json.rank-0-of-2").write_text("{}")
    assert [p.name for p in shard_files(out)] == [f"run.json.rank-{r}-of-3" for r in range(3)]
    assert shards[0].leader and not shards[1].leader


def test_a_data_parallel_run_needs_an_output(data_file: Path) -> None:
    with pytest.raises(DataError, match="needs --out"):
        run_evaluation(object(), _config(data_file), shard=Shard(0, 2, _no_wait))


# ------------------------------------------------------------------------------ real model
@pytest.mark.slow
def test_shards_merge_and_a_resume_with_another_world_size(
    model, data_file: Path, tmp_path: Path
) -> None:
    cfg = _config(data_file, method="in-context")
    whole = run_evaluation(model, cfg, out=tmp_path / "whole.json", progress=False)

    # A non-leader writes its shard and returns it.
    rank1 = run_evaluation(
        model, cfg, out=tmp_path / "r1.json", progress=False, shard=Shard(1, 2, _no_wait)
    )
    assert not rank1["complete"] and [r["case_id"] for r in rank1["records"]] == ["eiffel"]
    assert not (tmp_path / "r1.json").exists()
    assert [p.name for p in shard_files(tmp_path / "r1.json")] == ["r1.json.rank-1-of-2"]

    # Rank 0 of two, with rank 1 gone: it scores its share but cannot merge.
    out = tmp_path / "run.json"
    with pytest.raises(DataError, match="lack 1 of 3 records"):
        run_evaluation(model, cfg, out=out, progress=False, shard=Shard(0, 2, _no_wait))
    assert not out.exists() and [p.name for p in shard_files(out)] == ["run.json.rank-0-of-2"]
    # One process resumes from the shard: it scores only what is missing, then merges.
    scored: list[str] = []
    import sake_lens.evaluate.runner as runner_mod

    real = runner_mod._evaluate_chunk

    def spy(model_: Any, records: Any, *a: Any, **k: Any) -> Any:
        scored.extend(r.case_id for r in records)
        return real(model_, records, *a, **k)

    runner_mod._evaluate_chunk = spy  # type: ignore[assignment]
    try:
        merged = run_evaluation(model, cfg, out=out, progress=False)
    finally:
        runner_mod._evaluate_chunk = real  # type: ignore[assignment]
    assert scored == ["eiffel"]
    assert merged["complete"] and shard_files(out) == []
    _assert_close(_outcomes(whole), _outcomes(merged))
    assert json.loads(out.read_text())["complete"]


@pytest.mark.slow
def test_torchrun_with_two_processes_equals_one_process(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "eval",
        "--data",
        str(data_file),
        "--method",
        "sake",
        "--mode",
        "all",
        "--paraphrases",
        "4",
        "--no-progress",
    ]
    one = tmp_path / "one.json"
    assert main([*common, "--out", str(one)]) == 0
    capsys.readouterr()
    two = tmp_path / "two.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    done = subprocess.run(
        [*launch, "-m", "sake_lens.cli.main", *common, "--out", str(two)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("efficacy") >= 1  # one table, printed by rank 0
    assert shard_files(two) == []
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["complete"] and [r["case_id"] for r in b["records"]] == [
        "darrieux",
        "eiffel",
        "toyota",
    ]
    _assert_close(_outcomes(a), _outcomes(b))
    # both ranks fitted their share into the edit folder; each read all three back
    states = sorted(p.name for p in (tmp_path / "two.json.edits").glob("fits*.json"))
    assert states == ["fits.rank-0.json", "fits.rank-1.json"]
