"""Layer sweep: fit one edit at every layer and measure what each layer's edit does.

:func:`layer_sweep` builds the edit's source and target prompts once, collects the activations
of **every** site in one forward pass per batch, fits one transport map per site, and evaluates
each site's edit with steered forward passes, batched over prompts:

* **efficacy** — the steered greedy next token on the edit prompt starts the new object;
* **generalisation** — the same on held-out paraphrases (never used for fitting);
* **specificity** — neighbour prompts keep their unsteered greedy prediction;

beside the probability of the new object's first token, the KL divergence on the neighbours,
the map's Wasserstein distance between source and target (``diagnostics()['wasserstein2']``)
and its condition number. :data:`RECOMMENDATION_RULE` picks the recommended site.

Evaluation without a router (no gate, the default) reuses the unsteered computation: the
edit changes only the prompt's last token, and causal attention leaves every earlier position
as it was, so each steered pass runs that one token on the KV cache of the unsteered prefix —
the same numbers as a full steered pass (a test checks it) at a small fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..collect.activations import collect_activations
from ..errors import DistributionError, SakeLensError, SiteError
from ..model.loading import model_id as get_model_id
from ..model.sites import FINAL_SITE, Site, resolve_site
from ..model.tokens import bos_convention, object_first_token, starts_object
from ..prompts.distributions import build_prompt_sets, prompts_hash
from ..prompts.request import EditRequest
from ..prompts.text import comparison_keys, split_noisy_prefix
from ..steer.edit import Edit, EditConfig
from ..steer.hooks import Router
from .steered_eval import Outcomes, evaluate_edits, last_position_only
from .sweep_result import RECOMMENDATION_RULE, LayerResult, SweepResult, rank_key

__all__ = [
    "SITE_KINDS",
    "RECOMMENDATION_RULE",
    "LayerResult",
    "SweepResult",
    "sweep_sites",
    "default_sweep_prompts",
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


def _rate(values: list[bool]) -> float:
    return sum(values) / len(values)


@torch.no_grad()
def layer_sweep(
    model: Any,
    request: EditRequest | dict[str, Any],
    paraphrases: Sequence[str],
    held_out: Sequence[str],
    neighbours: Sequence[str],
    layers: Sequence[int] | None = None,
    site_kinds: Sequence[str] = ("resid_post",),
    *,
    include_final: bool = True,
    config: EditConfig | None = None,
    router_factory: Callable[[Edit], Router] | None = None,
    batch_size: int | None = None,
    fast: bool = True,
    progress: bool | None = None,
) -> SweepResult:
    """Fit the edit at every site and measure efficacy, generalisation and specificity.

    Args:
        model: a TransformerLens model (see :func:`sake_lens.load_model`).
        request: the fact to change.
        paraphrases: prompts of the same fact used to fit (templates with ``{}`` or filled in).
        held_out: other paraphrases, never used to fit, for generalisation.
        neighbours: prompts the edit must not change (other subjects, other facts).
        layers: block indices (default: all); ``site_kinds`` at each, plus the final site
            when ``include_final``.
        config: map kind, regulariser, strength and prompt distributions (its ``site`` is
            replaced by each swept site).
        router_factory: ``edit -> Router`` to evaluate gated edits (e.g. a scope gate); the
            default applies every edit to every prompt, so specificity is then the ungated
            damage of the map at that site.
        fast: reuse the unsteered computation (ungated only): run just the prompt's last
            token on the KV cache of the rest (``evaluation="kv-cache"``, when the model's
            cache is verified), else start at the edited block; the result is that of a full
            steered pass (a test checks it). ``False`` runs full passes.

    Returns:
        A :class:`SweepResult`; ``result.recommended`` is chosen by
        :data:`RECOMMENDATION_RULE`, and ``plot_sweep(result)`` draws it.

    Raises:
        DistributionError: held-out prompts overlap the fitting ones, or too few valid targets.

    Example:
        >>> result = layer_sweep(model, request, paraphrases, held_out,  # doctest: +SKIP
        ...                      neighbours, layers=range(0, 30, 5))
        >>> result.recommended, result.best.score  # doctest: +SKIP
    """
    t0, c0 = time.perf_counter(), time.process_time()
    if isinstance(request, dict):
        request = EditRequest.from_dict(request)
    config = config or EditConfig()
    batch_size = batch_size or config.batch_size
    sites = sweep_sites(model, layers, site_kinds, include_final=include_final)
    fit_prompts = set(_fill(request, paraphrases, "paraphrase")) | {request.text}
    held = _fill(request, held_out, "held-out")
    near = _fill(request, neighbours, "neighbour")
    if not held or not near:
        raise DistributionError(
            "layer_sweep needs held-out paraphrases (for generalisation) and neighbour prompts "
            f"(for specificity); got {len(held)} and {len(near)}."
        )
    fit_keys = set().union(*(comparison_keys(p, request.subject) for p in fit_prompts))
    leaked = [h for h in held if comparison_keys(h, request.subject) & fit_keys]
    if leaked:
        raise DistributionError(
            f"held-out prompts {leaked[:3]!r} are also fitting prompts (compared without noisy "
            "prefixes); generalisation must be measured on prompts the edit was not fitted on. "
            "Remove them from one of the lists (default_sweep_prompts splits them for you)."
        )
    prompts = build_prompt_sets(request, paraphrases, config.distributions)
    prepend_bos = bos_convention(model)

    acts = collect_activations(
        model,
        prompts.source + prompts.target,
        sites,
        batch_size=batch_size,
        predict=True,
        progress=progress,
        extra_hooks=last_position_only(model),
    )
    t_collect = time.perf_counter()
    n_src = len(prompts.source)
    assert acts.predictions is not None
    decoded = [model.tokenizer.decode([int(t)]) for t in acts.predictions]
    prompts.target_predictions = decoded[n_src:]
    if config.distributions.validate_targets:
        first_new = object_first_token(model.tokenizer, request.new)
        prompts.kept = [
            starts_object(t, request.new, first_token=first_new) for t in prompts.target_predictions
        ]
    else:
        prompts.kept = [True] * len(prompts.target)
    n_kept = sum(prompts.kept)
    if prompts.purity < config.distributions.min_purity or n_kept < 2:
        raise DistributionError(
            f"Only {n_kept}/{len(prompts.kept)} target samples make the model say "
            f"{request.new!r} (purity {prompts.purity:.0%}); try stronger target templates "
            "(target_templates=('fact-twice', 'repeat-3')) or more paraphrases."
        )
    source_purity = _rate([starts_object(t, request.old) for t in decoded[:n_src]])
    keep = torch.tensor([True] * n_src + prompts.kept)
    common: dict[str, Any] = dict(
        request=request,
        model_id=get_model_id(model),
        d_model=int(model.cfg.d_model),
        prepend_bos=prepend_bos,
        compatibility_mode=bool(getattr(model, "sake_lens_compatibility_mode", True)),
        purity=prompts.purity,
        n_source=n_src,
        n_target=n_kept,
        prompts_hash=prompts_hash(prompts),
        prompts=prompts,
    )
    edits: list[Edit] = []
    geometry: list[tuple[float, float]] = []
    for site in sites:
        x = acts[site.hook][keep]
        xs, xt = x[:n_src], x[n_src:]
        site_config = dataclasses.replace(config, site=site.hook)
        try:
            fitted = site_config.make_map().fit(xs, xt)
        except SakeLensError as exc:
            raise type(exc)(f"layer sweep at {site.hook}: {exc}") from exc
        edits.append(
            Edit(
                site=site,
                map=fitted,
                config=site_config,
                source_acts=xs,
                target_acts=xt,
                **common,
            )
        )
        w2 = fitted.diagnostics().get("wasserstein2")
        w2 = _gaussian_w2(xs, xt) if w2 is None else w2
        geometry.append((w2, w2 / float(x.norm(dim=1).mean())))
    t_fit = time.perf_counter()

    eval_prompts = [request.text, *held, *near]
    new, old = (
        _first_token(model.tokenizer, request.new),
        _first_token(model.tokenizer, request.old),
    )
    base, outs, path = evaluate_edits(
        model,
        edits,
        eval_prompts,
        new,
        old,
        batch_size=batch_size,
        prepend_bos=prepend_bos,
        router_factory=router_factory,
        fast=fast,
        progress=progress,
    )
    t_eval = time.perf_counter()

    decode = model.tokenizer.decode
    first_new = object_first_token(model.tokenizer, request.new)
    i_held = slice(1, 1 + len(held))
    i_near = slice(1 + len(held), len(eval_prompts))

    def texts(o: Outcomes) -> list[str]:
        return [decode([int(t)]) for t in o.top]

    base_text = texts(base)
    results = []
    for edit, out, (w2, w2_rel) in zip(edits, outs, geometry):
        tokens = texts(out)
        said_new = [starts_object(t, request.new, first_token=first_new) for t in tokens]
        on_topic = slice(0, 1 + len(held))
        diag = edit.map.diagnostics()
        results.append(
            LayerResult(
                site=edit.site.hook,
                layer=edit.site.layer,
                efficacy=float(said_new[0]),
                generalisation=_rate(said_new[i_held]),
                specificity=_rate(
                    [int(a) == int(b) for a, b in zip(out.top[i_near], base.top[i_near])]
                ),
                p_new_edit=float(out.lp_new[0].exp()),
                p_new=float(out.lp_new[on_topic].exp().mean()),
                prob_efficacy=float((out.lp_new[on_topic] > out.lp_old[on_topic]).double().mean()),
                neighbour_kl=float(out.kl[i_near].mean()),
                wasserstein2=w2,
                wasserstein2_relative=w2_rel,
                cond_map=float(diag.get("cond_map", math.nan)),
                diagnostics=diag,
                predictions={
                    "edit": tokens[:1],
                    "held_out": tokens[i_held],
                    "neighbours": tokens[i_near],
                },
            )
        )
    best = min(results, key=rank_key)
    said_new_base = [starts_object(t, request.new, first_token=first_new) for t in base_text]
    baseline = {
        "efficacy": float(said_new_base[0]),
        "generalisation": _rate(said_new_base[i_held]),
        "said_old_edit": starts_object(base_text[0], request.old),
        "p_new_edit": float(base.lp_new[0].exp()),
        "predictions": {
            "edit": base_text[:1],
            "held_out": base_text[i_held],
            "neighbours": base_text[i_near],
        },
    }
    timings = {
        "collect_s": t_collect - t0,
        "fit_s": t_fit - t_collect,
        "eval_s": t_eval - t_fit,
        "total_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,  # CPU time of this process (all threads)
    }
    log.info(
        "layer sweep of %s: %d sites in %.1f s, recommended %s",
        request.text,
        len(sites),
        timings["total_s"],
        best.site,
    )
    return SweepResult(
        request=request,
        model_id=get_model_id(model),
        config=config,
        layers=results,
        recommended=best.site,
        rule=RECOMMENDATION_RULE,
        gated=router_factory is not None,
        purity=prompts.purity,
        source_purity=source_purity,
        n_source=n_src,
        n_target=n_kept,
        prompts={"paraphrases": prompts.paraphrases, "held_out": held, "neighbours": near},
        baseline=baseline,
        timings=timings,
        evaluation=path,
        edits={e.site.hook: e for e in edits},
    )
