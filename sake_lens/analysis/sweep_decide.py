"""From per-edit sweep outcomes to a decision that does not hinge on one prompt.

:func:`summarise` turns the :class:`~sake_lens.analysis.sweep_result.SiteRecord` of every
edit into one :class:`~sake_lens.analysis.sweep_result.SiteSummary` per (site, alpha, reg):
pooled rates with percentile-bootstrap intervals that resample *edits* (prompts of one edit
are not independent: they share its map), and the spread of the per-edit values. One bootstrap
draw of edits is shared by every setting, so settings are compared on the same resamples.

:func:`decide` applies :data:`DECISION_RULE`. The score is what a user of the default gate
gets: efficacy, paraphrase generalisation and locality, each with the fact gate on. Two
settings whose score intervals overlap are tied — the data cannot order them — and the tie is
broken by locality with the gate *off* (how much the map damages prompts it should not touch
when a gate lets one through), which is also drawn, and then by the paper's site.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ..errors import SakeLensError
from ..model.sites import FINAL_SITE
from .sweep_result import Candidate, Recommendation, SiteRecord, SiteSummary, Stat, site_label

__all__ = ["DECISION_RULE", "METRICS", "summarise", "decide", "per_edit_metrics"]

#: The metrics summarised per setting, each with the gate on and off.
METRICS = ("efficacy", "generalisation", "relation", "neighbour", "locality", "score")

#: How the recommended setting is chosen (written in the JSON, the figure and the page).
DECISION_RULE = (
    "score = mean(efficacy, held-out paraphrase generalisation, locality) per edit with the "
    "default fact gate on, averaged over edits, with a percentile-bootstrap interval by edit. "
    "(1) Every setting whose interval reaches the highest lower bound is tied with the best. "
    "(2) Among the tied, the highest locality with the gate off (every prompt steered) wins, "
    "again by intervals: those whose interval reaches the best lower bound stay tied. "
    "(3) A remaining tie goes to the paper's site (ln_final.hook_out), at the default alpha "
    "and reg if tied there, then to the higher mean score."
)


def per_edit_metrics(r: SiteRecord, gate: str) -> dict[str, float]:
    """One record's rates with the gate ``"on"`` or ``"off"`` (NaN where it has no prompt)."""

    def rate(k: int, n: int) -> float:
        return k / n if n else math.nan

    eff = r.efficacy_on if gate == "on" else r.efficacy_off
    held = r.held_on if gate == "on" else r.held_off
    rel = r.relation_on if gate == "on" else r.relation_off
    near = r.neighbour_on if gate == "on" else r.neighbour_off
    loc = rate(rel + near, r.n_relation + r.n_neighbour)
    gen = rate(held, r.n_held)
    parts = [x for x in (eff, gen, loc) if not math.isnan(x)]
    return {
        "efficacy": eff,
        "generalisation": gen,
        "relation": rate(rel, r.n_relation),
        "neighbour": rate(near, r.n_neighbour),
        "locality": loc,
        "score": sum(parts) / len(parts),
    }


def _counts(r: SiteRecord, metric: str, gate: str) -> tuple[float, int]:
    """(successes, prompts) of a pooled rate for one record."""
    on = gate == "on"
    if metric == "efficacy":
        return (r.efficacy_on if on else r.efficacy_off), 1
    if metric == "generalisation":
        return (r.held_on if on else r.held_off), r.n_held
    rel = r.relation_on if on else r.relation_off
    near = r.neighbour_on if on else r.neighbour_off
    if metric == "relation":
        return rel, r.n_relation
    if metric == "neighbour":
        return near, r.n_neighbour
    return rel + near, r.n_relation + r.n_neighbour  # locality


def _stat(k: np.ndarray, n: np.ndarray, idx: np.ndarray, q: tuple[float, float]) -> Stat:
    """A pooled rate sum(k)/sum(n) over edits, its bootstrap interval (rows of ``idx`` are
    resampled edit indices) and the per-edit spread."""
    total = int(n.sum())
    if total == 0:
        return Stat(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = k[idx].sum(1) / n[idx].sum(1)
        per_edit = k[n > 0] / n[n > 0]
    lo, hi = np.nanpercentile(boot, q)
    return Stat(
        float(k.sum() / total), float(lo), float(hi), float(per_edit.min()),
        float(per_edit.max()), total,
    )  # fmt: skip


def _mean_stat(x: np.ndarray, idx: np.ndarray, q: tuple[float, float], n: int) -> Stat:
    boot = x[idx].mean(1)
    lo, hi = np.percentile(boot, q)
    return Stat(float(x.mean()), float(lo), float(hi), float(x.min()), float(x.max()), n)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarise(
    records: Sequence[SiteRecord],
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[SiteSummary]:
    """One summary per (site, alpha, reg), in the order the records first name them.

    Every setting must have a record for the same edits (the bootstrap pairs them).

    Raises:
        SakeLensError: no records, or settings measured on different edits.
    """
    if not records:
        raise SakeLensError("no sweep records to summarise; every edit failed to fit.")
    groups: dict[Candidate, list[SiteRecord]] = defaultdict(list)
    for r in records:
        groups[r.candidate].append(r)
    edit_ids = sorted({r.edit for r in records})
    position = {e: i for i, e in enumerate(edit_ids)}
    for cand, rs in groups.items():
        if sorted(r.edit for r in rs) != edit_ids:
            raise SakeLensError(
                f"the setting {cand} was measured on edits {sorted(r.edit for r in rs)}, not on "
                f"all of {edit_ids}; summarise records of one sweep."
            )
    rng = np.random.default_rng(seed)
    n_e = len(edit_ids)
    idx = rng.integers(0, n_e, size=(n_bootstrap, n_e))
    tail = (1 - confidence) / 2 * 100
    q = (tail, 100 - tail)
    out = []
    for cand, rs in groups.items():
        rs = sorted(rs, key=lambda r: position[r.edit])
        stats: dict[str, Stat] = {}
        for gate in ("on", "off"):
            for metric in METRICS[:-1]:
                pairs = [_counts(r, metric, gate) for r in rs]
                k = np.array([p[0] for p in pairs], dtype=float)
                n = np.array([p[1] for p in pairs], dtype=float)
                stats[f"{metric}_{gate}"] = _stat(k, n, idx, q)
            score = np.array([per_edit_metrics(r, gate)["score"] for r in rs])
            n_prompts = sum(1 + r.n_held + r.n_relation + r.n_neighbour for r in rs)
            stats[f"score_{gate}"] = _mean_stat(score, idx, q, n_prompts)
        out.append(
            SiteSummary(
                site=cand[0],
                layer=rs[0].layer,
                alpha=cand[1],
                reg=cand[2],
                n_edits=n_e,
                stats=stats,
                p_new=_mean([r.p_new for r in rs]),
                fit_s=_mean([r.fit_s for r in rs]),
                w2_relative=_mean([r.w2_relative for r in rs]),
                cond_map=_mean([r.cond_map for r in rs]),
            )
        )
    return out


def _name(s: SiteSummary) -> str:
    return f"{s.site} (alpha {s.alpha:g}, reg {s.reg:g})"


def _short(s: SiteSummary, many: tuple[bool, bool]) -> str:
    """The site's label, with its alpha and reg where the sweep tried several."""
    parts = [site_label(s.site, s.layer)]
    if many[0]:
        parts.append(f"alpha {s.alpha:g}")
    if many[1]:
        parts.append(f"reg {s.reg:g}")
    return " @ ".join(parts[:1]) + (" @ " + ", ".join(parts[1:]) if parts[1:] else "")


def _tied(pool: list[SiteSummary], key: str) -> tuple[list[SiteSummary], float]:
    """The members of ``pool`` whose ``key`` interval reaches the highest lower bound."""
    bound = max(s[key].lo for s in pool)
    return [s for s in pool if s[key].overlaps(bound)], bound


def decide(
    summaries: Sequence[SiteSummary],
    *,
    default_alpha: float,
    default_reg: float,
    paper_site: str = FINAL_SITE,
) -> Recommendation:
    """Apply :data:`DECISION_RULE` to the summaries; the result carries its reason in words.

    Args:
        summaries: one per (site, alpha, reg), from :func:`summarise`.
        default_alpha, default_reg: the library's defaults (``EditConfig()``), preferred in
            step 3 at the paper's site.
        paper_site: the paper's site (the final normalised stream).
    """
    pool = [s for s in summaries if math.isfinite(s["score_on"].lo)]
    if not pool:
        raise SakeLensError("no setting has a finite score; the sweep measured nothing.")
    many = (len({s.alpha for s in pool}) > 1, len({s.reg for s in pool}) > 1)
    tied, bound = _tied(pool, "score_on")
    leader = max(tied, key=lambda s: s["score_on"].lo)
    tied_cands = [s.candidate for s in tied]
    head = (
        f"the best lower bound of the gated score is {bound:.3f} "
        f"({_short(leader, many)}: {leader['score_on'].text(3)})"
    )
    if len(tied) == 1:
        others = sorted((s for s in pool if s is not leader), key=lambda s: -s["score_on"].hi)
        nxt = f"; the next interval ends at {others[0]['score_on'].hi:.3f}" if others else ""
        return Recommendation(
            *leader.candidate,
            decided_by="score",
            reason=f"{_name(leader)}: {head}, and no other setting's interval reaches it{nxt}.",
            rule=DECISION_RULE,
            tied=tied_cands,
            tied_secondary=tied_cands,
        )
    usable = [s for s in tied if math.isfinite(s["locality_off"].lo)] or tied
    second, bound2 = _tied(usable, "locality_off")
    best2 = max(second, key=lambda s: s["locality_off"].lo)
    names = ", ".join(_short(s, many) for s in tied)
    step1 = f"{head}; {len(tied)} settings reach it and are tied ({names})"
    sec_cands = [s.candidate for s in second]
    if len(second) == 1:
        runner = sorted((s for s in usable if s is not best2), key=lambda s: -s["locality_off"].hi)
        vs = (
            f"; the next interval ends at {runner[0]['locality_off'].hi:.3f} "
            f"({_short(runner[0], many)})"
            if runner
            else ""
        )
        return Recommendation(
            *best2.candidate,
            decided_by="locality with the gate off",
            reason=f"{_name(best2)}: {step1}. Among them it keeps the most locality probes "
            f"unchanged with the gate off: {best2['locality_off'].text(3)}{vs}.",
            rule=DECISION_RULE,
            tied=tied_cands,
            tied_secondary=sec_cands,
        )
    step2 = (
        f"{step1}. Locality with the gate off does not separate "
        f"{len(second)} of them (best lower bound {bound2:.3f}: "
        + ", ".join(f"{_short(s, many)} {s['locality_off'].text(2)}" for s in second)
        + ")"
    )
    at_paper = [s for s in second if s.site == paper_site]
    default = [
        s
        for s in at_paper
        if math.isclose(s.alpha, default_alpha) and math.isclose(s.reg, default_reg)
    ]
    if default or at_paper:
        chosen = (default or sorted(at_paper, key=lambda s: -s["score_on"].value))[0]
        how = "the paper's site at the default alpha and reg" if default else "the paper's site"
        return Recommendation(
            *chosen.candidate,
            decided_by="the paper's site",
            reason=f"{_name(chosen)}: {step2}; the tie goes to {how}.",
            rule=DECISION_RULE,
            tied=tied_cands,
            tied_secondary=sec_cands,
        )
    chosen = max(second, key=lambda s: (s["score_on"].value, s["locality_off"].value))
    return Recommendation(
        *chosen.candidate,
        decided_by="mean score (not significant)",
        reason=f"{_name(chosen)}: {step2}; the paper's site is not among them, so the higher "
        f"mean score decides ({chosen['score_on'].value:.3f}), a difference the data do not "
        "support.",
        rule=DECISION_RULE,
        tied=tied_cands,
        tied_secondary=sec_cands,
    )
