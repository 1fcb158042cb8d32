"""Version of sake_lens and of the libraries an edit depends on."""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__", "library_versions"]

try:
    __version__ = metadata.version("sake-lens")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

_TRACKED = ("torch", "transformer-lens", "transformers", "POT", "numpy", "safetensors")


def library_versions() -> dict[str, str]:
    """Versions of sake_lens and the libraries whose behaviour an edit depends on.

    Returns:
        Package name -> installed version (``"not installed"`` when missing).
    """
    out = {"sake-lens": __version__}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
