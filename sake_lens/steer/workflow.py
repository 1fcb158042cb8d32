"""One call from an edit request to a fitted edit, with paraphrases built when none are given."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from ..prompts.request import EditRequest
from .edit import Edit, EditConfig, fit_edit

__all__ = ["make_edit", "default_paraphrases"]

log = logging.getLogger(__name__)


def default_paraphrases(request: EditRequest, n: int = 20, seed: int = 0) -> list[str]:
    """Paraphrases of ``request`` from the relation template bank (offline, seeded)."""
    from ..prompts.paraphrase import TemplateBankGenerator

    result = TemplateBankGenerator().generate(request, n, seed)
    if result.dropped:
        log.info("template bank: dropped %d paraphrases", len(result.dropped))
    return list(result.prompts)


def make_edit(
    model: Any,
    request: EditRequest,
    *,
    paraphrases: Sequence[str] | None = None,
    n_paraphrases: int = 20,
    site: str | None = None,
    seed: int = 0,
    config: EditConfig | None = None,
    implications: bool = False,
    **fit_kwargs: Any,
) -> Edit:
    """Fit an edit, drawing ``n_paraphrases`` from the template bank when none are given.

    With ``implications=True`` the edit's implied edits are fitted too
    (:func:`~sake_lens.steer.implied.fit_implied_edits`) and carried in ``edit.implied``; a
    registry adds them with the edit.
    """
    config = config or EditConfig()
    if site is not None:
        config = dataclasses.replace(config, site=site)
    if paraphrases is None:
        paraphrases = default_paraphrases(request, n_paraphrases, seed)
    edit = fit_edit(model, request, paraphrases, config=config, **fit_kwargs)
    if implications:
        from .implied import fit_implied_edits

        edit = dataclasses.replace(edit, implied=fit_implied_edits(model, edit))
    return edit
