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
from .sweep_plot import plot_sweep, plot_sweep_heatmap
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


def _sweep_summary_text(result: SweepResult) -> str:
    r, cfg, ec = result.request, result.config, result.edit_config
    done = [e for e in result.per_edit if "skipped" not in e]
    skipped = len(result.per_edit) - len(done)
    best = result.best
    n_sites = len(result.sites)
    return (
        f"Edit {_code(r.text)}: {_code(r.old)} → {_code(r.new)} on {_code(result.model_id)}, "
        f"swept with {len(done)} edits (this one and {len(done) - 1} default companions"
        + (f"; {skipped} skipped" if skipped else "")
        + f") at {n_sites} sites × alpha {', '.join(f'{a:g}' for a in cfg.alphas)} × reg "
        f"{', '.join(f'{x:g}' for x in cfg.regs)}; {ec.map_kind} map. Per site: "
        f"{best['generalisation_on'].n} held-out paraphrases, {best['relation_on'].n} "
        f"same-subject and {best['neighbour_on'].n} neighbour locality prompts over the "
        f"edits. Swept in {result.timings['total_s']:.0f} s ({result.evaluation} evaluation).\n\n"
        f"**Recommended: {_code(best.site)} at alpha {best.alpha:g}, reg {best.reg:g}** — "
        f"gated score {best['score_on'].text(3)}, locality with the gate off "
        f"{best['locality_off'].text(3)}.\n\n*Why:* {result.recommendation.reason}\n\n"
        f"*Rule:* {result.rule}"
    )


def _sweep_table(result: SweepResult) -> str:
    rows = []
    for x in result.at():
        mark = "**yes**" if x.candidate == result.recommendation.candidate else ""
        tied = "tied" if x.candidate in set(result.recommendation.tied) else ""
        rows.append(
            [
                x.label,
                x["score_on"].text(2),
                f"{x['efficacy_on'].value:.2f}",
                f"{x['generalisation_on'].value:.2f}",
                f"{x['locality_on'].value:.2f}",
                x["locality_off"].text(2),
                f"{x.w2_relative:.2f}",
                f"{x.cond_map:.3g}",
                f"{1000 * x.fit_s:.0f}",
                mark or tied,
            ]
        )
    best = result.best
    return (
        f"At alpha {best.alpha:g}, reg {best.reg:g}; gate on = the default fact gate, gate off = "
        "every prompt steered; [95 % bootstrap interval by edit].\n\n"
        + markdown_table(
            [
                "site",
                "score (on)",
                "efficacy (on)",
                "held-out (on)",
                "locality (on)",
                "locality (off)",
                "W2/‖h‖",
                "cond(A)",
                "fit ms",
                "",
            ],
            rows,
        )
    )


def _edits_table(result: SweepResult) -> str:
    rows = []
    for e in result.per_edit:
        q = e["request"]
        if "skipped" in e:
            rows.append([q["subject"], f"{q['old']} → {q['new']}", "skipped", e["skipped"][:80]])
            continue
        g, p = e["gate_accepts"], e["prompts"]
        rows.append(
            [
                q["subject"],
                f"{q['old']} → {q['new']}",
                f"{e['purity']:.0%}",
                f"{g['held_out']}/{len(p['held_out'])} held-out, {g['relation']}/"
                f"{len(p['relation'])} same-subject, {g['neighbours']}/{len(p['neighbours'])} "
                "neighbours",
            ]
        )
    return "**Edits swept** (the first is the one asked for)\n\n" + markdown_table(
        ["subject", "old → new", "target purity", "the fact gate accepts"], rows
    )


def _config_text(result: SweepResult) -> str:
    cfg = result.config.to_dict()
    ec = result.edit_config

    def show(v: Any) -> str:
        if v is None:
            return "every block"
        return (
            ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
            if isinstance(v, list)
            else str(v)
        )

    rows = [[k, show(v)] for k, v in cfg.items()]
    rows += [
        ["edit: map, rank", f"{ec.map_kind}, {ec.rank}"],
        ["edit: targets", ", ".join(ec.distributions.target_templates)],
        ["library versions", ", ".join(f"{k} {v}" for k, v in result.versions.items())],
    ]
    return "**Configuration** (all of it is in `sweep.json`)\n\n" + markdown_table(
        ["setting", "value"], rows
    )


def sweep_page(result: SweepResult, *, model: Any = None, title: str | None = None) -> AnalysisPage:
    """A page for a layer sweep: what was swept, the recommendation and its reason, the rule,
    the sweep figure and the site x alpha heatmap, the per-site table, the edits, the
    configuration.

    With ``model`` (and the sweep's fitted edits still in memory) it adds the activation
    distributions at the recommended site — source, target, transported and the neighbour
    prompts as out-of-scope — and the displacement figure with the logit lens.

    Returns:
        The sweep as an analysis page (write it as HTML or publish it).
    """
    page = AnalysisPage(title or result.title())
    best = result.best
    page.add_text(_sweep_summary_text(result))
    page.add_figure(
        plot_sweep(result),
        "layer-sweep",
        caption="The deciding quantities per site at the recommended alpha and reg; shaded: "
        "95 % bootstrap intervals by edit. Hover a point for its interval and per-edit spread.",
    )
    if len(result.config.alphas) * len(result.config.regs) > 1:
        page.add_figure(plot_sweep_heatmap(result), "sweep-heatmap")
    page.add_text(_sweep_table(result))
    page.add_text(_edits_table(result))
    page.add_text(_config_text(result))
    edit = result.edits.get(best.site)
    if (
        model is not None
        and edit is not None
        and edit.source_acts is not None
        and edit.target_acts is not None
    ):
        neighbours = result.per_edit[0]["prompts"]["neighbours"]
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
                title=f"Activations at {best.site}, alpha {best.alpha:g} (PCA of all points)",
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
    has one) and the displacement figure (with the logit lens when ``model`` is given).

    Returns:
        The report as an analysis page (write it as HTML or publish it).
    """
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
