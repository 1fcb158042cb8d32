"""Edits that travel: the reference loader and ``sake-lens edits export --format easysteer``.

The reference loader (sake_lens/registry/reference_loader.py) applies a saved edit to a plain
Hugging Face model with PyTorch hooks; on the real default model its next-token log-probabilities
must equal sake_lens's own steering (ungated) at both sites, for every map kind.

The EasySteer export is checked against what EasySteer reads, as found in its sources
(github.com/ZJU-REAL/EasySteer-vllm-v1, ``vllm/steer_vectors/``):

- ``api.py``: ``SteeringSpec`` has the keys ``vectors`` and ``conflict`` (pydantic,
  ``extra="forbid"``); each ``VectorSpec`` ``source``/``data``, ``algorithm``, ``scale``,
  ``layers``, ``normalize``, ``apply``, ``params``, ``name``; a ``data`` payload needs the
  algorithm's payload kind (``linear`` -> ``"linear"``) and, for a ``linear`` payload, ``layers``.
- ``payloads.py``: the wire dict has ``version`` (1), ``kind``, ``tensors`` (name -> ``shape``
  and float32 ``data``, base64 in JSON), ``extra`` and ``sha256``; a ``LinearMap`` has a 2-D
  ``weight`` and a 1-D ``bias`` as long as its rows.
- ``algorithms/linear.py`` and ``algorithms/base.py``: the linear algorithm maps the complete
  hidden state of a decoder layer's output (hidden + residual) to ``scale * (h @ W.T + b)``.
- ``api.py`` (``SelectSpec``): ``apply`` keys from a fixed set; ``prompt_positions=[-1]`` is the
  prompt's last token, ``generation="all"`` every decode step.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sake_lens.cli.main import main
from sake_lens.model.sites import Site
from sake_lens.prompts.distributions import DistributionConfig
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import save_edit
from sake_lens.registry.export import export_easysteer, fold
from sake_lens.registry.reference_loader import read_saved_edit, steer_hf_model
from sake_lens.steer.edit import Edit, EditConfig
from sake_lens.transport import make_map

from .helpers import correlated_samples

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
PARAPHRASES = ["{} grew up speaking", "The first language of {} was", "As a child, {} spoke"]
KINDS = ("gaussian", "diagonal", "mean-shift")
MID = "blocks.12.hook_resid_post"

# What EasySteer accepts (see the module docstring for the files each comes from).
SPEC_KEYS = {"vectors", "conflict"}
VECTOR_KEYS = {"source", "data", "algorithm", "scale", "layers", "normalize", "apply"}
VECTOR_KEYS |= {"params", "name"}
APPLY_KEYS = {
    f"{exclude}{phase}_{what}"
    for exclude in ("", "exclude_")
    for phase in ("prompt", "generation")
    for what in ("tokens", "positions", "window")
} | {"prompt", "generation"}
WIRE_KEYS = {"version", "kind", "tensors", "extra", "sha256"}


def _fitted(kind: str, d: int, seed: int) -> Any:
    source = correlated_samples(12, d, seed=seed)
    target = correlated_samples(10, d, shift=0.5, seed=seed + 1)
    args = {} if kind == "mean-shift" else {"reg": 1.0}
    return make_map(kind, **args).fit(source, target)


def hand_edit(
    hook: str, kind: str = "gaussian", *, d: int = 16, generation: str = "prompt", cont: int = 0
) -> Edit:
    """An edit with a map fitted to random samples (no model needed)."""
    config = EditConfig(site=hook, map_kind=kind, reg=1.0, generation=generation)
    return Edit(
        request=REQUEST,
        site=Site(hook),
        map=_fitted(kind, d, 0),
        config=config,
        model_id="hand-made",
        d_model=d,
        prepend_bos=False,
        compatibility_mode=True,
        purity=1.0,
        n_source=12,
        n_target=10,
        prompts_hash="0" * 64,
        object_ids=(11, 12, 13)[: cont + 1] if cont else (),
        continuation=tuple(_fitted(kind, d, 10 + i) for i in range(cont)),
    )


# ----------------------------------------------------------------------------- what EasySteer reads
def easysteer_reads(spec: dict[str, Any]) -> list[tuple[int, np.ndarray, np.ndarray, float, dict]]:
    """Validate ``spec`` as EasySteer does and return, per vector, (layer, W, b, scale, apply)."""
    assert set(spec) <= SPEC_KEYS and spec.get("conflict", "priority") in (
        "priority",
        "sequential",
        "error",
    )
    assert spec["vectors"], "vectors must be non-empty"
    out = []
    for vector in spec["vectors"]:
        assert set(vector) <= VECTOR_KEYS and "apply" in vector
        assert vector.get("source") is None and vector["algorithm"] == "linear"
        assert vector.get("params", {}) == {}
        assert vector["layers"] and all(isinstance(x, int) for x in vector["layers"])
        apply = vector["apply"]
        assert apply and set(apply) <= APPLY_KEYS
        assert apply.get("prompt") in (None, "all") and apply.get("generation") in (None, "all")
        wire = vector["data"]
        assert set(wire) == WIRE_KEYS and wire["version"] == 1 and wire["kind"] == "linear"
        arrays = {}
        digest = hashlib.sha256(b"linear:1")
        for name in sorted(wire["tensors"]):
            entry = wire["tensors"][name]
            raw = base64.b64decode(entry["data"], validate=True)
            arr = np.frombuffer(raw, dtype=np.float32).reshape(entry["shape"])
            assert np.isfinite(arr).all()
            digest.update(name.encode() + str(tuple(arr.shape)).encode() + arr.tobytes())
            arrays[name] = arr
        assert set(arrays) <= {"weight", "bias"}
        for key in sorted(wire["extra"]):
            digest.update(f"{key}={wire['extra'][key]!r}".encode())
        assert wire["sha256"] == digest.hexdigest(), "the content hash EasySteer keys on"
        weight, bias = arrays["weight"], arrays.get("bias")
        assert weight.ndim == 2 and (bias is None or bias.shape == (weight.shape[0],))
        for layer in vector["layers"]:
            out.append((layer, weight, bias, float(vector["scale"]), apply))
    return out


def easysteer_linear(h: torch.Tensor, weight: np.ndarray, bias: Any, scale: float) -> torch.Tensor:
    """EasySteer's linear algorithm: ``scale * (h @ W.T + b)``."""
    out = h @ torch.from_numpy(weight.copy()).to(h).T
    if bias is not None:
        out = out + torch.from_numpy(bias.copy()).to(h)
    return out * scale


# ----------------------------------------------------------------------------- folding
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.5])
def test_the_folded_map_is_the_steered_displacement(kind: str, alpha: float) -> None:
    """``W h + b == h + alpha (T(h) - h)`` against the map's own serving code."""
    m = _fitted(kind, 24, 3)
    weight, bias = fold(kind, m.state_dict(), alpha)
    h = correlated_samples(50, 24, shift=0.3, seed=7)
    want = h + alpha * m.displacement(h)
    got = h @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    if alpha == 0.0:
        assert np.array_equal(weight, np.eye(24)) and not bias.any()


@pytest.mark.parametrize("kind", KINDS)
def test_the_exported_file_is_what_easysteer_reads(kind: str, tmp_path: Path) -> None:
    edit = hand_edit(MID, kind, d=32)
    save_edit(edit, tmp_path / "reg")
    out = tmp_path / "spec.json"
    result = export_easysteer(tmp_path / "reg", edit.id, out)
    spec = json.loads(out.read_text())
    assert spec == result.spec and result.lost == []
    [(layer, weight, bias, scale, apply)] = easysteer_reads(spec)
    assert (layer, scale, apply) == (12, 1.0, {"prompt_positions": [-1]})
    assert spec["vectors"][0]["name"] == edit.id and spec["vectors"][0]["normalize"] is False
    h = correlated_samples(20, 32, shift=0.2, seed=5).float()
    want = h + edit.config.alpha * edit.map.displacement(h)
    torch.testing.assert_close(easysteer_linear(h, weight, bias, scale), want, rtol=1e-5, atol=1e-5)


def test_a_generated_mode_edit_also_steers_every_decode_step(tmp_path: Path) -> None:
    edit = hand_edit(MID, generation="generated")
    save_edit(edit, tmp_path / "reg")
    result = export_easysteer(tmp_path / "reg", edit.id, tmp_path / "spec.json")
    [(_, _, _, _, apply)] = easysteer_reads(result.spec)
    assert apply == {"prompt_positions": [-1], "generation": "all"}


def test_the_checker_refuses_what_easysteer_refuses(tmp_path: Path) -> None:
    """The validation above can fail: each change EasySteer rejects is caught."""
    edit = hand_edit(MID)
    save_edit(edit, tmp_path / "reg")
    good = export_easysteer(tmp_path / "reg", edit.id, tmp_path / "spec.json").spec
    easysteer_reads(good)

    def broken(change: Any) -> dict[str, Any]:
        spec = json.loads(json.dumps(good))
        change(spec["vectors"][0])
        return spec

    bad = [
        broken(lambda v: v.update(debug=True)),  # extra="forbid"
        broken(lambda v: v.pop("layers")),  # a linear payload needs layers
        broken(lambda v: v["data"].update(version=2)),
        broken(lambda v: v["data"]["tensors"]["bias"].update(shape=[15])),
        broken(lambda v: v["data"].update(sha256="0" * 64)),
        broken(lambda v: v["apply"].update(positions=[-1])),  # a v1 key
    ]
    for spec in bad:
        with pytest.raises((AssertionError, ValueError, KeyError)):
            easysteer_reads(spec)


# ----------------------------------------------------------------------------- the command line
def _one_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def test_export_refuses_an_edit_at_the_final_stream(tmp_path: Path, capsys: Any) -> None:
    edit = hand_edit("ln_final.hook_out")
    save_edit(edit, tmp_path / "reg")
    out = tmp_path / "spec.json"
    argv = ["edits", "export", str(tmp_path / "reg"), edit.id, "--format", "easysteer"]
    assert main([*argv, "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("sake-lens edits: error: Edit ") and "'ln_final.hook_out'" in line
    assert "'blocks.{L}.hook_resid_post'" in line and "before the final norm" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing", "x"], "No edit registry at"),
        (["reg", "nope"], "No edit 'nope' in this registry (1 edits)."),
        (["reg", "ID", "--out", "no/such/folder/spec.json"], "Cannot write no/such/folder"),
    ],
)
def test_export_errors_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    edit = hand_edit(MID)
    save_edit(edit, tmp_path / "reg")
    monkeypatch.chdir(tmp_path)
    args = [edit.id if a == "ID" else a for a in args]
    out = [] if "--out" in args else ["--out", "spec.json"]
    assert main(["edits", "export", *args, "--format", "easysteer", *out]) == 2
    assert message in _one_line(capsys.readouterr().err)


def test_export_knows_only_easysteer(tmp_path: Path, capsys: Any) -> None:
    argv = ["edits", "export", "reg", "ID", "--format", "gguf", "--out", "x.json"]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "invalid choice: 'gguf'" in line and "sake-lens edits export --help" in line


def test_export_names_what_is_lost(tmp_path: Path, capsys: Any) -> None:
    edit = hand_edit(MID, generation="object", cont=2)
    save_edit(edit, tmp_path / "reg")
    out = tmp_path / "spec.json"
    argv = ["edits", "export", str(tmp_path / "reg"), edit.id, "--format", "easysteer"]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "sake-lens edits export: warning: not exported: its 2 continuation map(s), which carry "
        "the new object 'English' through generation: only its first token is steered.\n"
    )
    assert f"wrote {out}: edit {edit.id} as an EasySteer linear map at decoder layer 12" in (
        captured.out
    )
    easysteer_reads(json.loads(out.read_text()))


# ----------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def hf_model() -> Any:
    """The default model as plain transformers loads it (same weights as the bridge)."""
    from transformers import AutoModelForCausalLM

    from sake_lens.model.loading import default_model_dir, hf_progress_bars_off

    with hf_progress_bars_off():
        return AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return [REQUEST.text, "Danielle Darrieux grew up speaking", "The capital of Peru is"]


def _fit(model: Any, site: str, kind: str) -> Edit:
    from sake_lens.steer.edit import fit_edit

    config = EditConfig(
        site=site,
        map_kind=kind,
        generation="prompt",
        distributions=DistributionConfig(validate_targets=False),
    )
    return fit_edit(model, REQUEST, PARAPHRASES, config=config, progress=False)


@torch.no_grad()
def _sake_lens_logprobs(model: Any, edit: Edit, prompts: list[str]) -> torch.Tensor:
    from sake_lens.model.tokens import tokenize_batch
    from sake_lens.steer.hooks import steered

    batch = tokenize_batch(model, prompts)
    with steered(model, [edit]):
        logits = model(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
    return torch.log_softmax(logits.double(), -1)  # compatibility mode centres the logits


@torch.no_grad()
def _hf_logprobs(model: Any, hf: Any, prompts: list[str]) -> torch.Tensor:
    from sake_lens.model.tokens import tokenize_batch

    batch = tokenize_batch(model, prompts)  # the same left-padded ids and mask
    mask = batch.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = hf(batch.tokens, attention_mask=mask, position_ids=positions).logits[:, -1]
    return torch.log_softmax(logits.double(), -1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("site", "kind"),
    [("ln_final.hook_out", "gaussian"), (MID, "gaussian"), (MID, "diagonal"), (MID, "mean-shift")],
)
def test_the_reference_loader_matches_sake_lens_steering(
    site: str, kind: str, model: Any, hf_model: Any, prompts: list[str], tmp_path: Path
) -> None:
    edit = _fit(model, site, kind)
    save_edit(edit, tmp_path / "reg")
    ref = read_saved_edit(tmp_path / "reg")
    assert (ref.hook, ref.alpha, ref.kind) == (site, edit.config.alpha, kind)
    want = _sake_lens_logprobs(model, edit, prompts)
    unsteered = _hf_logprobs(model, hf_model, prompts)
    with steer_hf_model(hf_model, ref):
        got = _hf_logprobs(model, hf_model, prompts)
    assert (want - unsteered).abs().amax() > 0.5  # the edit moves the next token's distribution
    torch.testing.assert_close(got, want, rtol=0, atol=2e-3)
    assert _hf_logprobs(model, hf_model, prompts).equal(unsteered)  # the hook is removed


@pytest.mark.slow
def test_the_exported_spec_steers_a_layer_output_like_sake_lens(
    model: Any, hf_model: Any, prompts: list[str], tmp_path: Path, capsys: Any
) -> None:
    """EasySteer's linear algorithm, on decoder layer L's output at the last prompt token, with
    the exported payload, gives sake_lens's steered next-token distribution; the gate is lost."""
    from sake_lens.gate import GateConfig
    from sake_lens.registry import EditBook

    edit = _fit(model, MID, "gaussian")
    book = EditBook(model=model, gate=GateConfig(kind="hidden", metric="euclidean"))
    book.add(edit)
    book.save(tmp_path / "reg")
    out = tmp_path / "spec.json"
    argv = ["edits", "export", str(tmp_path / "reg"), edit.id, "--format", "easysteer"]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not exported: its scope gate (hidden): the exported map steers every prompt" in err
    [(layer, weight, bias, scale, apply)] = easysteer_reads(json.loads(out.read_text()))
    assert layer == 12 and apply == {"prompt_positions": [-1]}

    def easysteer_hook(module: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        steered = hidden.clone()
        steered[:, -1] = easysteer_linear(hidden[:, -1], weight, bias, scale)
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    handle = hf_model.model.layers[layer].register_forward_hook(easysteer_hook)
    try:
        got = _hf_logprobs(model, hf_model, prompts)
    finally:
        handle.remove()
    torch.testing.assert_close(got, _sake_lens_logprobs(model, edit, prompts), rtol=0, atol=2e-3)
