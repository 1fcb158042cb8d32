r"""A reference loader: apply a saved edit to a Hugging Face model with plain PyTorch hooks.

It reads the saved format directly (``registry.json`` and the entry's safetensors file, see
docs/saved-edits.md) and imports nothing from sake_lens, so it shows — and tests — that a saved
edit is fully described by its files: copy this module next to any PyTorch code to apply edits
without sake_lens or TransformerLens.

What it applies: the edit's map at its site, at the **last position of every forward pass**,
``h <- h + alpha (T(h) - h)``; for a prompt's next-token logits (one full pass over a batch,
left-padded) that is the prompt's last token, as sake_lens steers it. Not applied: the edit's
**scope gate** (the reference loader steers every prompt, in scope or not), its
**continuation maps** and generation modes (in a cached ``generate`` each decoding pass sees one
new token, which would be steered too). sake_lens's own steering does all of these.

Sites: ``blocks.{L}.hook_resid_post`` is the output of decoder layer ``L``
(``model.model.layers[L]``), the residual stream. ``ln_final.hook_out`` is the final norm
(``model.model.norm``): in TransformerLens's compatibility mode (the default, recorded with each
edit as ``compatibility_mode``) the bridge folds the norm's weight into the unembedding, so the
hook sees the normalised stream **before** that weight, $\hat x = x / \mathrm{rms}(x)$, and the
Hugging Face norm's output is $\gamma \odot \hat x$: the loader steers $\hat x$ and multiplies
by $\gamma$ again (Llama-style RMSNorm, ``weight * x_hat``, as the default model). Without
compatibility mode the hook is the norm's output itself. Every map is affine,
$T(h) - h = c + M h$, and is rebuilt from its stored tensors by :func:`affine_parts`.

Example:
    >>> edit = read_saved_edit("edits/")  # doctest: +SKIP
    >>> with steer_hf_model(hf_model, edit):  # doctest: +SKIP
    ...     logits = hf_model(input_ids).logits[:, -1]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from torch import Tensor

__all__ = ["ReferenceEdit", "read_saved_edit", "affine_parts", "site_module", "steer_hf_model"]

_FORMAT = "sake_lens.registry"
_MAX_VERSION = 2
_FINAL = "ln_final.hook_out"
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


@dataclass(frozen=True)
class ReferenceEdit:
    """What the reference loader needs of a saved edit: where, how strongly, and the map."""

    id: str
    hook: str
    alpha: float
    kind: str
    #: Fitted in TransformerLens's compatibility mode: ``ln_final.hook_out`` is then the final
    #: norm's output before its weight.
    compatibility_mode: bool
    #: The map's tensors, without the ``map.`` prefix (``mean_source``, ``basis``, ...).
    tensors: dict[str, Tensor]

    @property
    def layer(self) -> int | None:
        """The decoder layer of a ``blocks.{L}.hook_resid_post`` site, else None."""
        m = _RESID.match(self.hook)
        return int(m.group(1)) if m else None

    def displacement(self, h: Tensor) -> Tensor:
        """$T(h) - h$ for hidden states ``h`` (``(..., d)``), in ``h``'s dtype."""
        shift, matrix = affine_parts(self.kind, self.tensors)
        x = h.double()
        return (shift.to(x.device) + x @ matrix.to(x.device).T).to(h.dtype)


def read_saved_edit(path: str | Path, edit_id: str | None = None) -> ReferenceEdit:
    """Read one edit from a registry directory (``save_edit`` or ``EditBook.save`` output).

    ``edit_id`` may be omitted when the directory holds one edit. The tensor file is checked
    against the SHA-256 that names it.
    """
    folder = Path(path)
    manifest = json.loads((folder / "registry.json").read_text(encoding="utf-8"))
    if manifest.get("format") != _FORMAT or int(manifest.get("format_version", 0)) > _MAX_VERSION:
        raise ValueError(
            f"{folder} is not a sake_lens registry of format version <= {_MAX_VERSION}."
        )
    entries = manifest["entries"]
    if edit_id is None and len(entries) != 1:
        raise ValueError(f"{folder} holds {len(entries)} edits; name the one to read.")
    entry = next((e for e in entries if edit_id in (None, e["id"])), None)
    if entry is None:
        raise ValueError(f"{folder} has no edit {edit_id!r}.")
    data = (folder / "objects" / f"{entry['object']}.safetensors").read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["object"]:
        raise ValueError(f"The tensor file of edit {entry['id']} in {folder} is damaged.")
    tensors = st_load(data)
    meta = entry["edit"]
    return ReferenceEdit(
        id=entry["id"],
        hook=meta["site"]["hook"],
        alpha=float(meta["config"]["alpha"]),
        kind=meta["map"]["kind"],
        compatibility_mode=bool(meta["compatibility_mode"]),
        tensors={k[4:]: v for k, v in tensors.items() if k.startswith("map.")},
    )


def affine_parts(kind: str, tensors: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    r"""The map's displacement as ``(c, M)`` with $T(h) - h = c + M h$, in float64.

    - ``gaussian``: $T(h) = h + (\mu_t - \mu_s) + U \operatorname{diag}(\lambda) U^\top
      (h - \mu_s)$ (``basis`` $U$ is ``(d, r)``, ``eigenvalues`` $\lambda$ is ``(r,)``), so
      $M = U \operatorname{diag}(\lambda) U^\top$, $c = \mu_t - \mu_s - M \mu_s$.
    - ``diagonal``: $T(h)_i = \mu_{t,i} + s_i (h_i - \mu_{s,i})$ (``scale`` $s$), so
      $M = \operatorname{diag}(s - 1)$, $c = \mu_t - \mu_s - M \mu_s$.
    - ``mean-shift``: $T(h) = h + \mu_t - \mu_s$, so $M = 0$, $c = \mu_t - \mu_s$.
    """
    mu_s = tensors["mean_source"].double()
    mu_t = tensors["mean_target"].double()
    if kind == "gaussian":
        basis = tensors["basis"].double()
        matrix = (basis * tensors["eigenvalues"].double()) @ basis.T  # (d, r) @ (r, d)
    elif kind == "diagonal":
        matrix = torch.diag(tensors["scale"].double() - 1.0)
    elif kind == "mean-shift":
        matrix = torch.zeros(mu_s.shape[0], mu_s.shape[0], dtype=torch.float64)
    else:
        raise ValueError(f"Unknown map kind {kind!r}: expected gaussian, diagonal or mean-shift.")
    return mu_t - mu_s - matrix @ mu_s, matrix


def site_module(hf_model: Any, hook: str) -> torch.nn.Module:
    """The module whose output is the site: the final norm, or decoder layer ``L``."""
    body = hf_model.model  # LlamaForCausalLM (and Mistral, Qwen2, Gemma...) -> the decoder
    if hook == _FINAL:
        return body.norm  # type: ignore[no-any-return]
    m = _RESID.match(hook)
    if m is None:
        raise ValueError(
            f"The reference loader steers 'ln_final.hook_out' and 'blocks.{{L}}.hook_resid_post'; "
            f"this edit's site is {hook!r}."
        )
    return body.layers[int(m.group(1))]  # type: ignore[no-any-return]


@contextlib.contextmanager
def steer_hf_model(hf_model: Any, edit: ReferenceEdit) -> Iterator[Any]:
    """The Hugging Face model with ``edit`` applied inside the block (hook removed on exit).

    Every forward pass has its last position steered, in every row: pad batches on the left.
    """

    def steer(h: Tensor) -> Tensor:
        return h + edit.alpha * edit.displacement(h)

    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output  # (batch, seq, d)
        steered = hidden.clone()
        steered[:, -1, :] = steer(hidden[:, -1, :])
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    def weightless_norm_hook(norm: torch.nn.Module, args: Any, output: Tensor) -> Tensor:
        x = args[0][:, -1, :].float()  # the norm's input at the last position
        eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
        x_hat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # what the hook sees
        gain: Tensor = norm.weight  # type: ignore[assignment]  # Llama-style: weight * x_hat
        steered = output.clone()
        steered[:, -1, :] = (gain * steer(x_hat)).to(output.dtype)
        return steered

    weightless = edit.hook == _FINAL and edit.compatibility_mode
    handle = site_module(hf_model, edit.hook).register_forward_hook(
        weightless_norm_hook if weightless else hook
    )
    try:
        yield hf_model
    finally:
        handle.remove()
