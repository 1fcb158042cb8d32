"""Run-time fixes for known TransformerLens bugs, applied when a model is booted.

Each patch is idempotent, narrow (one method) and defers to the original code once its inputs
are in the shape that code expects. Remove a patch when the pinned TransformerLens fixes it.

``patch_bridge_kv_cache`` — TransformerLens 4.3 with transformers >= 5.2x: cached generation is
wrong. transformers renamed the cache keyword ``past_key_values`` to ``cache`` (decorators
``@deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")`` on every decoder layer and
attention module), so a decoder layer hands its attention ``cache=...``. The bridge's attention
components reimplement attention and store keys/values through
``AttentionBridge._update_kv_cache``, which reads only ``past_key_values`` / ``layer_past``: the
cache is never written, a decode step attends to itself alone and, as the cache stays empty,
at position 0 (see ``docs/upstream/kv_cache_bug.md``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

__all__ = ["patch_bridge_kv_cache", "apply_bridge_patches"]

log = logging.getLogger(__name__)

_PATCHED_FLAG = "_sake_lens_kv_cache_patch"


def patch_bridge_kv_cache() -> bool:
    """Make the bridge's attention components read transformers' renamed ``cache`` keyword.

    Wraps ``AttentionBridge._update_kv_cache`` (the single method every reimplemented
    attention bridge uses to extend keys/values with the cache) so that ``cache=`` is used
    when neither ``past_key_values=`` nor ``layer_past=`` is given. Patching the base class
    covers every subclass that does not override the method (none in TransformerLens 4.3).

    Returns:
        True if the patch was installed now, False if it was already installed.
    """
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    original = AttentionBridge._update_kv_cache
    if getattr(original, _PATCHED_FLAG, False):
        return False

    @functools.wraps(original)
    def _update_kv_cache(self: Any, k: Any, v: Any, **kwargs: Any) -> Any:
        if (
            kwargs.get("past_key_values") is None
            and kwargs.get("layer_past") is None
            and kwargs.get("cache") is not None
        ):
            kwargs["past_key_values"] = kwargs["cache"]
        return original(self, k, v, **kwargs)

    setattr(_update_kv_cache, _PATCHED_FLAG, True)
    AttentionBridge._update_kv_cache = _update_kv_cache  # type: ignore[method-assign]
    log.debug("Patched AttentionBridge._update_kv_cache to read transformers' `cache` keyword")
    return True


def apply_bridge_patches() -> None:
    """Install every TransformerLens patch sake_lens needs (idempotent; call before booting)."""
    patch_bridge_kv_cache()
