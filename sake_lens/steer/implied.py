"""Implied edits: an edit's logical implications, each fitted as an edit of its own.

After "the Eiffel Tower is in Italy", "The capital of the country where the Eiffel Tower is"
should go to Rome, not to Italy and not stay at Paris. One map cannot send the edit's prompts
to "Italy" and these to "Rome" when both are read at the same position of the same layer: a
mean shift moves every prompt the same way. So each implication the model can check (the new
country's capital, language, continent, currency; a new city's country; a new language's
script, family, homeland) becomes an *implied edit*
(:func:`~sake_lens.prompts.implications.implied_facts`): its own request
("The capital of the nation where Eiffel Tower is found is": Paris -> Rome), its own
paraphrases, and — beyond the SAKE paper, which takes implication targets from the model's own
in-context reasoning — targets read in a context where the chain of facts is written out
("Fact: Eiffel Tower is located in the country of Italy. Fact: The capital of Italy is Rome.
Question: ..."), which a small model follows far better than it reasons through two hops.

Each implied edit gets its own fact gate in a registry; the router sends a two-hop prompt to
the implied edit whose prompts it is nearest to, and the edit's own prompts to the edit.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import Any

from ..errors import SakeLensError
from ..prompts.implications import implied_facts, verify_attribute_table
from ..prompts.request import EditRequest
from ..prompts.world import DEFAULT_TABLE, AttributeTable
from .edit import Edit, EditConfig, fit_edit

__all__ = ["fit_implied_edits", "verified_new_object_table"]

log = logging.getLogger(__name__)

#: Per model: the rows already checked, and those it knows.
_CHECKED: weakref.WeakKeyDictionary[Any, tuple[set[tuple[str, str]], list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def verified_new_object_table(model: Any, requests: list[EditRequest]) -> AttributeTable:
    """The attribute-table rows of the requests' new objects that ``model`` knows (each row is
    checked once per model)."""
    from ..prompts.implications import IMPLIED_EDIT_TEMPLATES
    from ..prompts.text import normalize

    attributes = {a for _, a in IMPLIED_EDIT_TEMPLATES}
    wanted = {normalize(DEFAULT_TABLE.canonical(r.new)) for r in requests}
    rows = [
        r for r in DEFAULT_TABLE.rows if r.attribute in attributes and normalize(r.entity) in wanted
    ]
    try:
        checked, known = _CHECKED.setdefault(model, (set(), []))
    except TypeError:  # a model object without weak references: no cache
        checked, known = set(), []
    todo = [r for r in rows if (r.entity, r.attribute) not in checked]
    if todo:
        known += verify_attribute_table(model, DEFAULT_TABLE.subset(todo)).rows
        checked.update((r.entity, r.attribute) for r in todo)
    return DEFAULT_TABLE.subset(known)


def fit_implied_edits(
    model: Any,
    edit: Edit,
    *,
    table: AttributeTable | None = None,
    config: EditConfig | None = None,
) -> tuple[Edit, ...]:
    """Fit the implied edits of ``edit`` (those whose fit fails are skipped, with a log line).

    Args:
        model: the model ``edit`` was fitted on.
        edit: the edit whose implications to fit.
        table: attribute rows checked on ``model`` (default: the new object's rows, checked now).
        config: the implied edits' config (default: the edit's, with ``implied_alpha`` as
            ``alpha``); the chain contexts replace its target templates.

    Returns:
        The implied edits, each with ``implied_by`` set to ``edit.id``.
    """
    request = edit.request
    table = verified_new_object_table(model, [request]) if table is None else table
    base = config or dataclasses.replace(edit.config, alpha=edit.config.implied_alpha)
    out: list[Edit] = []
    for fact in implied_facts(request, table=table):
        distributions = dataclasses.replace(
            base.distributions, target_templates=fact.target_templates
        )
        cfg = dataclasses.replace(base, distributions=distributions)
        try:
            implied = fit_edit(model, fact.request, fact.paraphrases, config=cfg)
        except SakeLensError as exc:
            log.info(
                "Implied edit %s -> %s not fitted: %s", fact.request.text, fact.request.new, exc
            )
            continue
        out.append(dataclasses.replace(implied, implied_by=edit.id, implication=fact.chain))
    return tuple(out)
