"""One call from an edit request to a fitted edit, with paraphrases built when none are given."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from ..prompts.request import EditRequest
from .edit import Edit, EditConfig, LowPurityError, fit_edit

__all__ = [
    "make_edit",
    "default_paraphrases",
    "DEFAULT_N_PARAPHRASES",
    "STRONGER_TARGET_TEMPLATES",
    "MAX_RETRY_PARAPHRASES",
]

#: Template-bank paraphrases an edit is fitted on when none are given (also a sweep's).
DEFAULT_N_PARAPHRASES = 20

#: Target contexts added when an edit is retried for low purity: the two that make the default
#: model say the new object most often (see ``sake_lens.prompts.contexts.TARGET_TEMPLATES``).
STRONGER_TARGET_TEMPLATES: tuple[str, ...] = ("fact-twice", "repeat-3")
#: At most this many paraphrases are drawn for the retry (the CLI's --n-paraphrases limit).
MAX_RETRY_PARAPHRASES = 200

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
    n_paraphrases: int = DEFAULT_N_PARAPHRASES,
    site: str | None = None,
    seed: int = 0,
    config: EditConfig | None = None,
    implications: bool = False,
    retry: bool = False,
    **fit_kwargs: Any,
) -> Edit:
    """Fit an edit, drawing ``n_paraphrases`` from the template bank when none are given.

    With ``implications=True`` the edit's implied edits are fitted too
    (:func:`~sake_lens.steer.implied.fit_implied_edits`) and carried in ``edit.implied``; a
    registry adds them with the edit.

    With ``retry=True`` an edit refused for low target purity is fitted once more with the
    :data:`STRONGER_TARGET_TEMPLATES` added to its target contexts and more paraphrases (twice
    as many from the bank, or the given ones plus ``n_paraphrases`` from the bank): purity near
    ``min_purity`` passes or fails with the seed's draw, and a stronger context usually settles
    it. The retry is recorded in ``edit.retry`` (saved with the edit). It is off by default so
    that evaluations fit exactly the configuration they report.

    Args:
        model: a TransformerLens model (see :func:`sake_lens.load_model`).
        request: the fact to change.
        paraphrases: the prompts to fit on; None draws ``n_paraphrases`` from the bank.
        n_paraphrases: template-bank paraphrases drawn when ``paraphrases`` is None.
        site: the hook to edit at; None keeps the config's site.
        seed: seed of the draw from the template bank.
        config: how the edit is fitted; None uses :class:`~sake_lens.steer.edit.EditConfig`.
        implications: also fit the edit's implied edits.
        retry: fit once more with stronger target contexts when the purity is too low.

    Returns:
        The fitted edit (with its implied edits in ``edit.implied`` when asked for).

    Raises:
        LowPurityError: the purity is too low (with ``retry``: also on the retry, whose numbers
            the error carries).
    """
    config = config or EditConfig()
    if site is not None:
        config = dataclasses.replace(config, site=site)
    drawn = paraphrases is None
    if paraphrases is None:
        paraphrases = default_paraphrases(request, n_paraphrases, seed)
    try:
        edit = fit_edit(model, request, paraphrases, config=config, **fit_kwargs)
    except LowPurityError as refused:
        if not retry:
            raise
        more = 2 * n_paraphrases if drawn else n_paraphrases
        more_paraphrases = default_paraphrases(request, min(more, MAX_RETRY_PARAPHRASES), seed)
        if not drawn:
            more_paraphrases = list(dict.fromkeys([*paraphrases, *more_paraphrases]))
        edit = _retry_purer(model, request, more_paraphrases, config, refused, fit_kwargs)
    if implications:
        from .implied import fit_implied_edits

        edit = dataclasses.replace(edit, implied=fit_implied_edits(model, edit))
    return edit


def _retry_purer(
    model: Any,
    request: EditRequest,
    paraphrases: Sequence[str],
    config: EditConfig,
    refused: LowPurityError,
    fit_kwargs: dict[str, Any],
) -> Edit:
    """Fit again with stronger target contexts and ``paraphrases``; record the retry."""
    dist = config.distributions
    templates = tuple(dict.fromkeys((*dist.target_templates, *STRONGER_TARGET_TEMPLATES)))
    stronger = dataclasses.replace(
        config, distributions=dataclasses.replace(dist, target_templates=templates)
    )
    log.warning(
        "%s; retrying with target templates %s and %d paraphrases.",
        refused.summary,
        ", ".join(templates),
        len(paraphrases),
    )
    try:
        edit = fit_edit(model, request, paraphrases, config=stronger, **fit_kwargs)
    except LowPurityError as again:
        raise LowPurityError(
            n_kept=again.n_kept,
            n_total=again.n_total,
            min_purity=again.min_purity,
            new=again.new,
            advice=again.advice,
            retried=f"target templates {', '.join(templates)} and {len(paraphrases)} "
            f"paraphrases (the first try: purity {refused.purity:.0%})",
        ) from refused
    edit.retry = {
        "reason": refused.summary,
        "refused_purity": refused.purity,
        "min_purity": refused.min_purity,
        "target_templates": list(templates),
        "n_paraphrases": len(paraphrases),
    }
    return edit
