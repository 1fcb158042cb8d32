"""Analysis pages built from sake_lens objects: a layer sweep, and a registry of edits.

:func:`sweep_page` turns a :class:`~sake_lens.analysis.sweep.SweepResult` into an
:class:`~sake_lens.analysis.pages.AnalysisPage` (summary, per-layer table, the sweep figure, and
the distributions and displacement at the recommended site); :func:`edits_report` writes one
section per edit of a registry (request, site, purity, diagnostics, scope gate, displacement).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..collect.activations import collect_activations
from ..errors import SakeLensError
from ..steer.edit import Edit
from .displacement import plot_displacement
from .distributions import plot_distributions
from .pages import AnalysisPage
from .sweep_plot import plot_sweep
from .sweep_result import SweepResult

__all__ = ["sweep_page", "edits_report", "book_entries", "markdown_table"]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; cells are stringified, ``|`` and newlines escaped."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}" if math.isfinite(v) else str(v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def sweep_page(result: SweepResult, *, model: Any = None, title: str | None = None) -> AnalysisPage:
    """A page for a layer sweep.

    With ``model`` (and the sweep's fitted edits still in memory) it adds the activation
    distributions at the recommended site — source, target, transported and the neighbour
    prompts as out-of-scope — and the displacement figure with the logit lens.
    """
    r = result.request
    page = AnalysisPage(title or f"Layer sweep: {r.text} {r.old} → {r.new}")
    best = result.best
    page.add_text(
        f"Edit {_code(r.text)}: {_code(r.old)} → {_code(r.new)} on {_code(result.model_id)}, "
        f"{len(result.layers)} sites, {result.config.map_kind} map "
        f"(reg {result.config.reg:g}). Target purity {result.purity:.0%} "
        f"({result.n_target} kept), {result.n_source} source samples; "
        f"{len(result.prompts['held_out'])} held-out paraphrases and "
        f"{len(result.prompts['neighbours'])} neighbour prompts. Swept in "
        f"{result.timings['total_s']:.0f} s.\n\n"
        f"**Recommended site: {_code(best.site)}** — efficacy {best.efficacy:.2f}, "
        f"generalisation {best.generalisation:.2f}, specificity {best.specificity:.2f}.\n\n"
        f"*Rule:* {result.rule}. Specificity is "
        + (
            "gated."
            if result.gated
            else "ungated (every prompt is steered: the damage a scope gate must prevent)."
        )
    )
    page.add_figure(plot_sweep(result), "layer-sweep")
    rows = [
        [
            x.label,
            x.efficacy,
            x.generalisation,
            x.specificity,
            x.score,
            x.p_new,
            x.neighbour_kl,
            x.wasserstein2,
            x.cond_map,
            "**yes**" if x.site == best.site else "",
        ]
        for x in result.layers
    ]
    page.add_text(
        markdown_table(
            [
                "layer",
                "efficacy",
                "generalisation",
                "specificity",
                "score",
                "P(new)",
                "neighbour KL",
                "W2",
                "cond",
                "recommended",
            ],
            rows,
        )
    )
    edit = result.edits.get(best.site)
    if (
        model is not None
        and edit is not None
        and edit.source_acts is not None
        and edit.target_acts is not None
    ):
        neighbours = result.prompts["neighbours"]
        oos = collect_activations(model, neighbours, [edit.site])[edit.site.hook]
        prompts: dict[str, list[str]] = {"out_of_scope": neighbours}
        if edit.prompts is not None:
            prompts.update(source=edit.prompts.source, target=edit.prompts.kept_target)
        page.add_text(f"## At the recommended site, {_code(best.site)}")
        page.add_figure(
            plot_distributions(
                edit.source_acts,
                edit.target_acts,
                map=edit.map,
                out_of_scope=oos,
                prompts=prompts,
                title=f"Activations at {best.site} (PCA of all points)",
            ),
            "distributions",
            caption="Hover a point to see its prompt. *Transported* is T(source): a good map "
            "puts it on the target cloud; the neighbours (out of scope) must stay put, which "
            "only a scope gate ensures.",
        )
        page.add_figure(
            plot_displacement(
                edit.map,
                groups={"source": edit.source_acts, "out_of_scope": oos},
                prompts=prompts,
                model=model,
                site=best.site,
                title=f"Displacement at {best.site}",
            ),
            "displacement",
        )
    return page


def book_entries(book: Any) -> list[tuple[Edit, Any]]:
    """``(edit, scope or None)`` pairs of an edit registry (an ``EditBook``) or a list of
    edits."""
    if isinstance(book, Edit):
        return [(book, None)]
    entries = getattr(book, "entries", None)  # EditBook: BookEntry objects (edit, scope)
    if isinstance(entries, list) and all(hasattr(e, "edit") for e in entries):
        return [(e.edit, getattr(e, "scope", None)) for e in entries]
    if isinstance(book, (list, tuple)):
        return [(e, None) if isinstance(e, Edit) else tuple(e) for e in book]  # type: ignore[misc]
    edits = getattr(book, "edits", None)
    if callable(edits):
        edits = edits()
    if isinstance(edits, dict):
        edits = list(edits.values())
    if edits is None:
        edits = list(book)
    scope_of = getattr(book, "scope", None)
    out = []
    for e in edits:
        scope = None
        if callable(scope_of):
            try:
                scope = scope_of(e.id)
            except (KeyError, SakeLensError):
                scope = None
        out.append((e, scope))
    return out


def _edit_section(page: AnalysisPage, edit: Edit, scope: Any, model: Any) -> None:
    r = edit.request
    page.add_text(f"## {r.subject}: {r.old} → {r.new}\n\n`{edit.id}`")
    cfg = edit.config
    page.add_text(
        markdown_table(
            ["", ""],
            [
                ["prompt", _code(r.text)],
                ["old → new", f"{_code(r.old)} → {_code(r.new)}"],
                ["site", _code(str(edit.site))],
                ["map", f"{cfg.map_kind} (reg {cfg.reg:g}, rank {cfg.rank}, alpha {cfg.alpha:g})"],
                [
                    "target purity",
                    f"{edit.purity:.0%} ({edit.n_target} target / {edit.n_source} source samples)",
                ],
                ["model", _code(edit.model_id)],
                ["created", edit.created],
            ],
        )
    )
    diag = edit.map.diagnostics()
    page.add_text("**Diagnostics**\n\n" + markdown_table(["name", "value"], sorted(diag.items())))
    calibration = getattr(scope, "calibration", None)
    if calibration is not None:
        cal = calibration.to_dict() if hasattr(calibration, "to_dict") else dict(calibration)
        shown = {k: v for k, v in cal.items() if not isinstance(v, (dict, list))}
        page.add_text(
            f"**Scope gate** ({_code(str(getattr(scope, 'feature', '?')))})\n\n"
            + markdown_table(["name", "value"], sorted(shown.items()))
        )
    groups = None
    if edit.source_acts is not None and edit.target_acts is not None:
        groups = {"source": edit.source_acts, "target": edit.target_acts}
    page.add_figure(
        plot_displacement(
            edit.map,
            groups=groups,
            model=model,
            site=edit.site.hook,
            title=f"Displacement of {edit.id}",
        ),
        f"displacement-{edit.id}",
    )


def edits_report(
    book_or_edits: Any, *, model: Any = None, title: str = "Edit registry report"
) -> AnalysisPage:
    """One section per edit: request, site, purity, diagnostics, scope gate (when the registry
    has one) and the displacement figure (with the logit lens when ``model`` is given)."""
    entries = book_entries(book_or_edits)
    page = AnalysisPage(title)
    if not entries:
        page.add_text("The registry holds no edits.")
        return page
    page.add_text(
        markdown_table(
            ["edit", "prompt", "old → new", "site", "purity"],
            [
                [
                    _code(e.id),
                    _code(e.request.text),
                    f"{e.request.old} → {e.request.new}",
                    _code(str(e.site)),
                    f"{e.purity:.0%}",
                ]
                for e, _ in entries
            ],
        )
    )
    for edit, scope in entries:
        _edit_section(page, edit, scope, model)
    return page
