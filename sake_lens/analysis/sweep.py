"""Layer sweep: fit several edits at every site, alpha and reg, and decide where to edit.

:func:`layer_sweep` is the one sweep (``sake-lens sweep`` calls it with the same
:class:`~sake_lens.analysis.sweep_config.SweepConfig`). Per edit — the requested one and the
default companions (:func:`~sake_lens.analysis.sweep_config.sweep_requests`) — it builds the
source and target prompts once, collects the activations of **every** site in one forward pass
per batch, fits one map per site and regulariser (each alpha reuses it: alpha only scales the
displacement), and measures with steered passes:

* **efficacy** — the steered greedy next token on the edit prompt starts the new object;
* **generalisation** — the same on held-out paraphrases (whole templates never fitted on);
* **locality** — the same subject through other relations
  (:func:`~sake_lens.evaluate.locality.relation_probes`) and other subjects through the same
  relation keep the unedited model's next token;

each with the default fact gate **on** and **off**. The fact gate decides from the prompt's
text alone, and an edit steers only the prompt's last token, so a gated outcome is the steered
outcome where the gate accepts the prompt and the unedited one where it rejects it: one set of
steered passes gives both. Beside them: P(new), the fit time, the map's W2 relative to the
activation norm and its condition number. :func:`~sake_lens.analysis.sweep_decide.summarise`
pools the edits with bootstrap intervals by edit, and
:func:`~sake_lens.analysis.sweep_decide.decide` recommends a setting by
:data:`~sake_lens.analysis.sweep_decide.DECISION_RULE`.

The steered passes reuse the unsteered computation: the edit changes only the prompt's last
token, and causal attention leaves every earlier position as it was, so each steered pass runs
that one token on the KV cache of the unsteered prefix — the same numbers as a full steered
pass (a test checks it) at a small fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..collect.activations import collect_activations
from ..errors import DistributionError, GateError, SakeLensError, SiteError
from ..model.loading import model_id as get_model_id
from ..model.sites import FINAL_SITE, Site, resolve_site
from ..model.tokens import bos_convention, object_first_token, starts_object
from ..prompts.distributions import build_prompt_sets, prompts_hash
from ..prompts.request import EditRequest
from ..prompts.text import comparison_keys, split_noisy_prefix
from ..steer.edit import Edit, EditConfig
from .steered_eval import evaluate_edits, last_position_only
from .sweep_config import SweepConfig, sweep_requests
from .sweep_decide import DECISION_RULE, decide, summarise
from .sweep_result import Candidate, SiteRecord, SweepResult

__all__ = [
    "SITE_KINDS",
    "DECISION_RULE",
    "SweepConfig",
    "SweepResult",
    "EditPrompts",
    "sweep_sites",
    "default_sweep_prompts",
    "sweep_edit_prompts",
    "layer_sweep",
]

log = logging.getLogger(__name__)

#: Hook name of each site kind at layer ``L``.
SITE_KINDS: dict[str, str] = {
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_out": "blocks.{L}.hook_mlp_out",
}


def sweep_sites(
    model: Any,
    layers: Sequence[int] | None = None,
    site_kinds: Sequence[str] = ("resid_post",),
    *,
    include_final: bool = True,
) -> list[Site]:
    """The sites a sweep visits: every kind at every layer (default all), then the final site."""
    n_layers = int(model.cfg.n_layers)
    layers = list(range(n_layers)) if layers is None else sorted(set(int(x) for x in layers))
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise SiteError(f"layers {bad} do not exist; the model has layers 0..{n_layers - 1}.")
    unknown = [k for k in site_kinds if k not in SITE_KINDS]
    if unknown:
        raise SiteError(f"unknown site kinds {unknown}; allowed: {sorted(SITE_KINDS)}.")
    hooks = [SITE_KINDS[k].format(L=layer) for layer in layers for k in site_kinds]
    if include_final:
        hooks.append(FINAL_SITE)
    if not hooks:
        raise SiteError("the sweep has no site: pass layers, site_kinds or include_final=True.")
    return [resolve_site(model, h) for h in hooks]


def default_sweep_prompts(
    request: EditRequest,
    *,
    n_paraphrases: int = 40,
    n_held_out: int = 8,
    n_neighbours: int = 8,
    seed: int = 0,
) -> tuple[list[str], list[str], list[str]]:
    """Fitting paraphrases, held-out paraphrases and neighbour prompts for a sweep, offline.

    Paraphrases come from the relation template bank; whole *templates* are held out (a
    held-out prompt never shares its core sentence with a fitting one, noisy prefix or not).
    Neighbours are the same relation about other subjects (``gate.other_subject_prompts``).

    Returns:
        ``(fitting paraphrases, held-out paraphrases, neighbour prompts)``.
    """
    from ..gate.out_of_scope import other_subject_prompts
    from ..steer.workflow import default_paraphrases

    every = default_paraphrases(request, n_paraphrases + 2 * n_held_out, seed)
    cores: dict[str, list[str]] = {}
    for p in every:
        cores.setdefault(split_noisy_prefix(p, request.subject)[1].casefold(), []).append(p)
    own = split_noisy_prefix(request.text, request.subject)[1].casefold()
    candidates = sorted(c for c in cores if c != own)
    rng = random.Random(seed)
    rng.shuffle(candidates)
    held_cores = candidates[: max(1, min(n_held_out, len(candidates) // 3))]
    depth = max(len(cores[c]) for c in held_cores)
    held = [cores[c][i] for i in range(depth) for c in held_cores if i < len(cores[c])]
    held = held[:n_held_out]  # round robin: one prompt of each held-out template first
    fit = [p for c, ps in cores.items() if c not in held_cores for p in ps][:n_paraphrases]
    near = other_subject_prompts(request, n_neighbours, seed)
    return fit, held, list(near)


def _first_token(tokenizer: Any, obj: str) -> int:
    ids = tokenizer.encode(" " + obj.strip(), add_special_tokens=False)
    if not ids:
        raise DistributionError(f"the object {obj!r} tokenises to nothing.")
    return int(ids[0])


def _fill(request: EditRequest, prompts: Sequence[str], what: str) -> list[str]:
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise DistributionError(f"{what} prompt {i} is empty ({p!r}); remove it.")
        out.append(request.fill(p.strip()) if "{}" in p else p.strip())
    return list(dict.fromkeys(out))


def _gaussian_w2(xs: Tensor, xt: Tensor) -> float:
    """W2 between Gaussian fits (unregularised): fidelity = nuclear norm of Xs Xtᵀ / √(ns nt)."""
    cs, ct = xs - xs.mean(0), xt - xt.mean(0)
    fid = torch.linalg.matrix_norm(cs @ ct.T, ord="nuc") / math.sqrt(len(xs) * len(xt))
    tr = cs.square().sum() / len(xs) + ct.square().sum() / len(xt)
    w2_sq = (xs.mean(0) - xt.mean(0)).square().sum() + (tr - 2 * fid).clamp_min(0)
    return float(w2_sq.sqrt())


@dataclass(frozen=True)
class EditPrompts:
    """The prompts one edit is fitted and measured on (filled in, without duplicates)."""

    paraphrases: list[str]
    held_out: list[str]
    relation: list[str]
    neighbours: list[str]

    def check(self, request: EditRequest) -> None:
        """Refuse held-out prompts that are fitting prompts (compared without noisy prefixes)."""
        if not self.held_out:
            raise DistributionError(
                f"the edit {request.text!r} has no held-out paraphrase; generalisation needs "
                "some (raise n_held_out, or pass held_out=...)."
            )
        if not self.relation and not self.neighbours:
            raise DistributionError(
                f"the edit {request.text!r} has no locality probe; pass neighbours=..."
            )
        fit = {*self.paraphrases, request.text}
        fit_keys = set().union(*(comparison_keys(p, request.subject) for p in fit))
        leaked = [h for h in self.held_out if comparison_keys(h, request.subject) & fit_keys]
        if leaked:
            raise DistributionError(
                f"held-out prompts {leaked[:3]!r} are also fitting prompts (compared without "
                "noisy prefixes); generalisation must be measured on prompts the edit was not "
                "fitted on. Remove them from one of the lists (default_sweep_prompts splits "
                "them for you)."
            )


def sweep_edit_prompts(
    request: EditRequest,
    config: SweepConfig,
    *,
    paraphrases: Sequence[str] | None = None,
    held_out: Sequence[str] | None = None,
    neighbours: Sequence[str] | None = None,
) -> EditPrompts:
    """The prompts of one edit: the template bank's split (:func:`default_sweep_prompts`) and
    :func:`~sake_lens.evaluate.locality.relation_probes`, unless given."""
    from ..evaluate.locality import relation_probes

    fit, held, near = default_sweep_prompts(
        request,
        n_paraphrases=config.n_paraphrases,
        n_held_out=config.n_held_out,
        n_neighbours=config.n_neighbours,
        seed=config.seed,
    )
    if paraphrases:
        fit = list(paraphrases)
        if held_out is None:  # keep only bank held-outs unrelated to the given paraphrases
            keys = set().union(
                *(comparison_keys(request.fill(p), request.subject) for p in [*fit, request.text])
            )
            held = [h for h in held if not comparison_keys(h, request.subject) & keys]
    relation = [p for _, p in relation_probes(request, config.n_relation, config.seed)]
    prompts = EditPrompts(
        paraphrases=_fill(request, fit, "paraphrase"),
        held_out=_fill(request, held if held_out is None else held_out, "held-out"),
        relation=_fill(request, relation, "relation"),
        neighbours=_fill(request, near if neighbours is None else neighbours, "neighbour"),
    )
    prompts.check(request)
    return prompts


def _gate_accepts(model: Any, edit: Edit, prompts: list[str]) -> list[bool]:
    """Whether the edit's default fact gate accepts each prompt (it reads the text only)."""
    from ..gate.config import GateConfig
    from ..gate.router import ScopeRouter
    from ..gate.scope import fit_scope

    scope = fit_scope(edit, GateConfig(), model=model)
    routes = ScopeRouter([edit], [scope], model=model).route_texts(prompts)
    return [int(x) == 0 for x in routes]


@dataclass
class _EditRun:
    records: list[SiteRecord]
    info: dict[str, Any]
    edits: dict[Candidate, Edit]
    path: str


def _count(values: Sequence[bool]) -> int:
    return int(sum(bool(v) for v in values))


@torch.no_grad()
def _sweep_one(
    model: Any,
    index: int,
    request: EditRequest,
    prompts: EditPrompts,
    sites: list[Site],
    config: SweepConfig,
    edit_config: EditConfig,
    batch_size: int,
    progress: bool | None,
) -> _EditRun:
    """Fit and measure one edit at every (site, reg, alpha)."""
    built = build_prompt_sets(request, prompts.paraphrases, edit_config.distributions)
    acts = collect_activations(
        model,
        built.source + built.target,
        sites,
        batch_size=batch_size,
        predict=True,
        progress=progress,
        extra_hooks=last_position_only(model),
    )
    n_src = len(built.source)
    assert acts.predictions is not None
    tok = model.tokenizer
    decoded = [tok.decode([int(t)]) for t in acts.predictions]
    built.target_predictions = decoded[n_src:]
    first_new = object_first_token(tok, request.new)
    if edit_config.distributions.validate_targets:
        built.kept = [
            starts_object(t, request.new, first_token=first_new) for t in built.target_predictions
        ]
    else:
        built.kept = [True] * len(built.target)
    n_kept = sum(built.kept)
    if built.purity < edit_config.distributions.min_purity or n_kept < 2:
        raise DistributionError(
            f"Only {n_kept}/{len(built.kept)} target samples make the model say "
            f"{request.new!r} (purity {built.purity:.0%}); try stronger target templates "
            "(target_templates=('fact-twice', 'repeat-3')) or more paraphrases."
        )
    keep = torch.tensor([True] * n_src + built.kept)
    common: dict[str, Any] = dict(
        request=request,
        model_id=get_model_id(model),
        d_model=int(model.cfg.d_model),
        prepend_bos=bos_convention(model),
        compatibility_mode=bool(getattr(model, "sake_lens_compatibility_mode", True)),
        purity=built.purity,
        n_source=n_src,
        n_target=n_kept,
        prompts_hash=prompts_hash(built),
        prompts=built,
    )
    edits: list[Edit] = []
    geometry: list[tuple[float, float, float]] = []
    for site in sites:
        x = acts[site.hook][keep]
        xs, xt = x[:n_src], x[n_src:]
        norm = float(x.norm(dim=1).mean())
        for reg in config.regs:
            reg_config = dataclasses.replace(edit_config, site=site.hook, reg=reg)
            t0 = time.perf_counter()
            try:
                fitted = reg_config.make_map().fit(xs, xt)
            except SakeLensError as exc:
                raise type(exc)(f"layer sweep at {site.hook}, reg {reg:g}: {exc}") from exc
            fit_s = time.perf_counter() - t0
            w2 = fitted.diagnostics().get("wasserstein2")
            w2 = _gaussian_w2(xs, xt) if w2 is None else float(w2)
            for alpha in config.alphas:  # no refit: alpha scales the displacement
                edits.append(
                    Edit(
                        site=site,
                        map=fitted,
                        config=dataclasses.replace(reg_config, alpha=alpha),
                        source_acts=xs if index == 0 else None,
                        target_acts=xt if index == 0 else None,
                        **common,
                    )
                )
                geometry.append((fit_s, w2, w2 / norm))

    eval_prompts = [request.text, *prompts.held_out, *prompts.relation, *prompts.neighbours]
    try:
        accepted = _gate_accepts(model, edits[0], eval_prompts)
    except GateError as exc:
        raise GateError(f"the fact gate of {request.text!r}: {exc}") from exc
    new, old = _first_token(tok, request.new), _first_token(tok, request.old)
    base, outs, path = evaluate_edits(
        model,
        edits,
        eval_prompts,
        new,
        old,
        batch_size=batch_size,
        prepend_bos=bos_convention(model),
        router_factory=None,
        fast=True,
        progress=progress,
    )
    n_held, n_rel = len(prompts.held_out), len(prompts.relation)
    i_held = slice(1, 1 + n_held)
    i_rel = slice(1 + n_held, 1 + n_held + n_rel)
    i_near = slice(1 + n_held + n_rel, len(eval_prompts))
    base_text = [tok.decode([int(t)]) for t in base.top]
    base_new = [starts_object(t, request.new, first_token=first_new) for t in base_text]
    records = []
    for edit, out, (fit_s, w2, w2_rel) in zip(edits, outs, geometry):
        texts = [tok.decode([int(t)]) for t in out.top]
        new_off = [starts_object(t, request.new, first_token=first_new) for t in texts]
        new_on = [n if a else b for n, a, b in zip(new_off, accepted, base_new)]
        same_off = [int(a) == int(b) for a, b in zip(out.top, base.top)]
        same_on = [s or not a for s, a in zip(same_off, accepted)]
        on_topic = slice(0, 1 + n_held)
        records.append(
            SiteRecord(
                edit=index,
                site=edit.site.hook,
                layer=edit.site.layer,
                alpha=float(edit.config.alpha),
                reg=float(edit.config.reg),
                n_held=n_held,
                n_relation=n_rel,
                n_neighbour=len(prompts.neighbours),
                efficacy_on=float(new_on[0]),
                efficacy_off=float(new_off[0]),
                held_on=_count(new_on[i_held]),
                held_off=_count(new_off[i_held]),
                relation_on=_count(same_on[i_rel]),
                relation_off=_count(same_off[i_rel]),
                neighbour_on=_count(same_on[i_near]),
                neighbour_off=_count(same_off[i_near]),
                p_new=float(out.lp_new[on_topic].exp().mean()),
                fit_s=fit_s,
                w2=w2,
                w2_relative=w2_rel,
                cond_map=float(edit.map.diagnostics().get("cond_map", math.nan)),
            )
        )
    info = {
        "request": request.to_dict(),
        "purity": built.purity,
        "n_source": n_src,
        "n_target": n_kept,
        "said_old": starts_object(base_text[0], request.old),
        "gate_accepts": {
            "edit": accepted[0],
            "held_out": _count(accepted[i_held]),
            "relation": _count(accepted[i_rel]),
            "neighbours": _count(accepted[i_near]),
        },
        "prompts": {
            "paraphrases": prompts.paraphrases,
            "held_out": prompts.held_out,
            "relation": prompts.relation,
            "neighbours": prompts.neighbours,
        },
    }
    kept = {(e.site.hook, float(e.config.alpha), float(e.config.reg)): e for e in edits}
    return _EditRun(records, info, kept if index == 0 else {}, path)


def layer_sweep(
    model: Any,
    requests: EditRequest | dict[str, Any] | Sequence[EditRequest] | None = None,
    config: SweepConfig | None = None,
    *,
    edit_config: EditConfig | None = None,
    paraphrases: Sequence[str] | None = None,
    held_out: Sequence[str] | None = None,
    neighbours: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Fit several edits at every site, alpha and reg; measure them and recommend a setting.

    Args:
        model: a TransformerLens model (see :func:`sake_lens.load_model`).
        requests: the edit(s) to sweep for; default companions from the bundled list fill up
            to ``config.n_edits`` (None: the bundled edits alone).
        config: sites, alphas, regs, edits and prompt counts (default
            ``SweepConfig.default()``: :class:`SweepConfig`, or its fast variant when
            ``SAKE_LENS_FAST`` is set).
        edit_config: how each edit is fitted and applied (default :class:`EditConfig`); its
            ``site``, ``alpha`` and ``reg`` are replaced by the swept ones.
        paraphrases, held_out, neighbours: the first edit's own prompts instead of the
            template bank's.

    Returns:
        A :class:`SweepResult`; ``result.recommendation`` says what was chosen and why
        (:data:`DECISION_RULE`), ``plot_sweep(result)`` and ``plot_sweep_heatmap(result)``
        draw it.

    Raises:
        DistributionError: the first edit's held-out prompts overlap its fitting ones, or
            too few of its targets say the new object (a companion that fails is skipped and
            reported in ``result.per_edit``).

    Example:
        >>> result = layer_sweep(model, request, SweepConfig(layers=range(20, 30)))  # doctest: +SKIP
        >>> result.recommendation.reason  # doctest: +SKIP
    """
    t0, c0 = time.perf_counter(), time.process_time()
    config = config or SweepConfig.default()
    edit_config = edit_config or EditConfig()
    batch_size = batch_size or edit_config.batch_size
    if isinstance(requests, dict):
        requests = EditRequest.from_dict(requests)
    todo = sweep_requests(requests, config.n_edits)
    sites = sweep_sites(model, config.layers, config.site_kinds, include_final=config.include_final)
    records: list[SiteRecord] = []
    per_edit: list[dict[str, Any]] = []
    kept: dict[Candidate, Edit] = {}
    path = "full"
    for i, request in enumerate(todo):
        try:
            prompts = sweep_edit_prompts(
                request,
                config,
                **(
                    dict(paraphrases=paraphrases, held_out=held_out, neighbours=neighbours)
                    if i == 0
                    else {}
                ),
            )
            run = _sweep_one(
                model, i, request, prompts, sites, config, edit_config, batch_size, progress
            )
        except SakeLensError as exc:
            if i == 0:
                raise
            log.warning("layer sweep: skipped the companion edit %s: %s", request.text, exc)
            per_edit.append({"request": request.to_dict(), "skipped": str(exc)})
            continue
        records += run.records
        per_edit.append(run.info)
        kept.update(run.edits)
        path = run.path
        log.info("layer sweep: edit %d/%d (%s) done", i + 1, len(todo), request.text)
    t_run = time.perf_counter()
    summaries = summarise(
        records, n_bootstrap=config.n_bootstrap, confidence=config.confidence, seed=config.seed
    )
    recommendation = decide(summaries, default_alpha=edit_config.alpha, default_reg=edit_config.reg)
    _, alpha, reg = recommendation.candidate
    edits = {
        site: e
        for (site, a, r), e in kept.items()
        if math.isclose(a, alpha) and math.isclose(r, reg)
    }
    timings = {
        "run_s": t_run - t0,
        "total_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,  # CPU time of this process (all threads)
        "per_edit_s": (t_run - t0) / max(1, sum("skipped" not in e for e in per_edit)),
    }
    log.info(
        "layer sweep: %d edits x %d sites in %.1f s, recommended %s",
        len(todo),
        len(sites),
        timings["total_s"],
        recommendation.site,
    )
    return SweepResult(
        requests=todo,
        model_id=get_model_id(model),
        config=config,
        edit_config=edit_config,
        records=records,
        summaries=summaries,
        recommendation=recommendation,
        per_edit=per_edit,
        timings=timings,
        evaluation=path,
        edits=edits,
    )
