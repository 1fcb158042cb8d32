"""Determinism: the same inputs and seed give byte-identical saved edits and evaluation results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sake_lens.prompts.distributions import DistributionConfig
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import save_edit, storage
from sake_lens.steer.edit import EditConfig, fit_edit
from tests.helpers import DEV_DATA

from .reliability_helpers import SUBJECTS, fake_book

REQUEST = EditRequest("Rome", "{} is the capital of", "Italy", "France")
PARAPHRASES = ["The city of {} is the capital of", "{}, the capital of", "{} lies in"]
CONFIG = EditConfig(distributions=DistributionConfig(validate_targets=False))
DATA = DEV_DATA  # the CounterFact dev file


def _object_bytes(path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((path / storage.OBJECTS).glob("*.safetensors"))]


def test_fitting_the_same_edit_twice_saves_byte_identical_tensors(
    tiny_model, tmp_path: Path
) -> None:
    a = fit_edit(tiny_model, REQUEST, PARAPHRASES, config=CONFIG)
    b = fit_edit(tiny_model, REQUEST, PARAPHRASES, config=CONFIG)
    assert a.id == b.id
    save_edit(a, tmp_path / "a")
    save_edit(b, tmp_path / "b")
    assert _object_bytes(tmp_path / "a") == _object_bytes(tmp_path / "b")
    assert len(_object_bytes(tmp_path / "a")) == 1
    ma, mb = (json.loads((tmp_path / x / storage.MANIFEST).read_text()) for x in "ab")
    for m in (ma, mb):  # only the timestamps (and the entry checksum covering them) may differ
        m.pop("saved"), m.pop("created")
        m["entries"][0].pop("added"), m["entries"][0]["edit"].pop("created")
        m["entries"][0].pop("checksum")
    assert ma == mb


def test_the_same_registry_saved_twice_has_identical_tensor_files(tmp_path: Path) -> None:
    fake_book(SUBJECTS[:3]).save(tmp_path / "a")
    fake_book(SUBJECTS[:3]).save(tmp_path / "b")
    assert _object_bytes(tmp_path / "a") == _object_bytes(tmp_path / "b")


def _without_timing(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _without_timing(v)
            for k, v in obj.items()
            if not any(
                t in k.lower() for t in ("time", "timing", "second", "date", "created", "started")
            )
        }
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_file(), reason="CounterFact dev data not available")
def test_evaluation_json_is_identical_across_runs(tmp_path: Path) -> None:
    outs = []
    for run in ("one", "two"):
        out = tmp_path / f"{run}.json"
        subprocess.run(
            [sys.executable, "-m", "sake_lens.cli.main", "eval", "--data", str(DATA), "--n", "2",
             "--method", "sake", "--no-generation", "--no-progress", "--seed", "0",
             "--out", str(out)],
            check=True,
            capture_output=True,
            timeout=900,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        outs.append(_without_timing(json.loads(out.read_text())))
    assert outs[0] == outs[1]
