r"""Export a saved edit as an EasySteer linear-steering spec (vLLM serving).

EasySteer (github.com/ZJU-REAL/EasySteer; its vLLM fork ZJU-REAL/EasySteer-vllm-v1) steers a
vLLM server with a ``SteeringSpec``: JSON with a list of ``vectors``, each naming an algorithm,
the decoder layers it acts on, a ``scale``, an ``apply`` clause (which token positions) and an
in-memory ``data`` payload. Its ``linear`` algorithm takes a ``LinearMap`` payload and maps the
complete hidden state at a decoder layer's **output** (hidden + residual, before the next
layer; the final norm comes after the last layer) to ``scale * (h @ W.T + b)``.

A sake_lens edit is affine, ``h -> h + alpha (T(h) - h)`` with $T(h) - h = c + M h$
(:func:`~sake_lens.registry.reference_loader.affine_parts`), so it folds into one linear map:

$$W = I + \alpha M,\qquad b = \alpha c,\qquad \text{scale} = 1.$$

The payload is written in EasySteer's wire form (``vllm/steer_vectors/payloads.py``:
``version`` 1, ``kind`` ``"linear"``, float32 tensors as base64 bytes with their shapes, and
the content ``sha256``), which its server decodes from JSON. Only edits at
``blocks.{L}.hook_resid_post`` (decoder layer ``L``'s output) can be exported: EasySteer
steers no other point. What the spec cannot carry is reported, not silently dropped: the
scope gate (the exported map applies to every prompt) and the continuation maps.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RegistryError
from .reference_loader import affine_parts
from .storage import (
    atomic_write,
    check_entry,
    checksums_required,
    decode_entry,
    locked,
    malformed,
    read_manifest,
    read_object,
    unknown_id,
)

__all__ = ["EASYSTEER_WIRE_VERSION", "EasySteerExport", "easysteer_spec", "export_easysteer"]

#: The payload wire version EasySteer's ``validate_wire`` accepts.
EASYSTEER_WIRE_VERSION = 1
_SITE = "blocks.{L}.hook_resid_post"


@dataclass
class EasySteerExport:
    """An exported spec and what it leaves out."""

    spec: dict[str, Any]
    layer: int
    lost: list[str] = field(default_factory=list)


def fold(kind: str, tensors: dict[str, torch.Tensor], alpha: float) -> tuple[np.ndarray, ...]:
    """``(W, b)`` in float64 with ``W h + b = h + alpha (T(h) - h)`` for every ``h``."""
    shift, matrix = affine_parts(kind, tensors)
    weight = torch.eye(matrix.shape[0], dtype=torch.float64) + alpha * matrix
    return weight.numpy(), (alpha * shift).numpy()


def linear_payload(weight: np.ndarray, bias: np.ndarray) -> dict[str, Any]:
    """EasySteer's ``LinearMap(weight, bias).to_wire()``, with base64 data for JSON.

    The ``sha256`` is computed as EasySteer computes it (kind and wire version, then each tensor
    in name order: its name, its shape as a Python tuple's text and its float32 bytes).
    """
    tensors = {
        "bias": np.ascontiguousarray(bias, dtype="<f4"),
        "weight": np.ascontiguousarray(weight, dtype="<f4"),
    }
    digest = hashlib.sha256(f"linear:{EASYSTEER_WIRE_VERSION}".encode())
    wire = {}
    for name in sorted(tensors):
        arr = tensors[name]
        digest.update(name.encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
        wire[name] = {"shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}
    return {
        "version": EASYSTEER_WIRE_VERSION,
        "kind": "linear",
        "tensors": wire,
        "extra": {},
        "sha256": digest.hexdigest(),
    }


def easysteer_spec(
    path: Path, entry: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> EasySteerExport:
    """The EasySteer ``SteeringSpec`` of one manifest entry (of the registry at ``path``).

    Raises:
        RegistryError: the edit's site is not a decoder layer's output.
    """
    try:
        edit, scope = decode_entry(entry, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed(path, entry, exc) from exc
    layer = edit.site.layer
    if layer is None or edit.site.hook != f"blocks.{layer}.hook_resid_post":
        raise RegistryError(
            f"Edit {edit.id} steers {edit.site.hook!r}, but EasySteer's linear steering acts on "
            f"a decoder layer's output, before the final norm; fit the edit again at a "
            f"compatible site such as {_SITE!r} (`sake-lens edit ... --site "
            "blocks.20.hook_resid_post`) and export that one."
        )
    map_tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("map.")}
    weight, bias = fold(edit.map.kind, map_tensors, float(edit.config.alpha))
    apply: dict[str, Any] = {"prompt_positions": [-1]}  # the prompt's last token
    lost = []
    if edit.config.generation == "generated":
        apply["generation"] = "all"  # the map at every generated token, as sake_lens does
    if scope is not None:
        lost.append(
            f"its scope gate ({scope.config.kind}): the exported map steers every prompt, "
            "in scope or not"
        )
    if edit.continuation:
        lost.append(
            f"its {len(edit.continuation)} continuation map(s), which carry the new object "
            f"{edit.request.new!r} through generation: only its first token is steered"
        )
    vector = {
        "data": linear_payload(weight, bias),
        "algorithm": "linear",
        "scale": 1.0,
        "layers": [layer],
        "normalize": False,
        "apply": apply,
        "name": edit.id,
    }
    return EasySteerExport({"vectors": [vector], "conflict": "priority"}, layer, lost)


def export_easysteer(path: str | Path, edit_id: str, out: str | Path) -> EasySteerExport:
    """Write edit ``edit_id`` of the registry at ``path`` to ``out`` as an EasySteer spec.

    Raises:
        RegistryError: no registry, no such edit, or a site EasySteer cannot steer.
        EditFileError: a damaged registry, or ``out`` cannot be written.
    """
    folder = Path(path)
    with locked(folder, exclusive=False):
        manifest = read_manifest(folder)
        if manifest is None:
            raise RegistryError(
                f"No edit registry at {folder} (no registry.json); check the path: a registry "
                "is a folder written by `sake-lens edit ... --save DIR` or EditBook.save()."
            )
        entry = next((e for e in manifest["entries"] if e["id"] == edit_id), None)
        if entry is None:
            raise unknown_id(edit_id, [e["id"] for e in manifest["entries"]])
        check_entry(folder, entry, required=checksums_required(manifest))
        tensors = read_object(folder, entry)
    result = easysteer_spec(folder, entry, tensors)
    atomic_write(Path(out), json.dumps(result.spec, indent=1).encode())
    return result
