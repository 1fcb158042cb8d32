"""The methods the harness compares, and how each one is put on the model.

* ``none`` — the unedited model.
* ``in-context`` — no steering: a prefix stating the new fact
  (:data:`IN_CONTEXT_PREFIX`) goes before the probe. In ``single`` mode it is the record's own
  fact; in ``all`` mode it is the fact the probe's prompt is *retrieved* for — the one whose
  scope gate (the registry's default gate, fitted on the same paraphrases as ``sake``'s) routes
  the prompt, or nothing when no gate accepts it — as retrieval-based in-context editors (IKE,
  MeLLo) do. Stating all 200 facts of a run before every probe would put ~2,800 tokens in front
  of each one.
* ``mean-shift`` — ActAdd-like: sake_lens's defaults with ``map_kind="mean-shift"``.
* ``sake`` — sake_lens's defaults: :func:`~sake_lens.steer.workflow.make_edit` with its default
  config and paraphrase count, gated by the registry's default gate.
* ``sake-reference`` — the paper's recipe as published (:mod:`.reference`).

Paraphrases for fitting come from :func:`~sake_lens.prompts.leakage.fitting_prompts` (the
default generator with the record's evaluation prompts excluded and a leakage check), with the
count :func:`~sake_lens.steer.workflow.make_edit` uses by default.

**Modes.** ``single`` — each edit alone (the paper's protocol); records are still batched
together: one router holds the chunk's edits and lets each row reach only its own record's edit
(through that edit's own gate, fitted as in a one-edit registry), which is the same as running
each edit alone. ``all`` — every edit of the run active at once, routed by the registry (the
nearest accepting gate wins).

A record whose edit cannot be fitted (:class:`~sake_lens.errors.SakeLensError`, e.g. a target
distribution without the new object, or POT returning NaN) is kept: its failure is recorded and
it is scored with no edit applied, as a user of the method would experience it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import SakeLensError
from ..gate import FeatureCache, GateConfig, Scope, ScopeRouter, fit_scope
from ..model.tokens import starts_object
from ..registry.book import EditBook
from ..steer.edit import Edit, EditConfig
from ..steer.hooks import check_edits_fit, steering_hooks
from ..steer.workflow import make_edit
from .data import EvalRecord
from .reference import REFERENCE_GATE_THRESHOLD, reference_config

__all__ = [
    "METHODS",
    "MODES",
    "IN_CONTEXT_PREFIX",
    "Treatment",
    "MethodOverrides",
    "fact_router",
    "fit_record_edit",
    "fitting_paraphrases",
    "prepare_treatment",
    "method_description",
]

log = logging.getLogger(__name__)

METHODS = ("none", "in-context", "mean-shift", "sake", "sake-reference")
MODES = ("single", "all")
#: The in-context baseline's statement of the new fact, put before each probe.
IN_CONTEXT_PREFIX = "Fact: {prompt} {new}.\n"


def _default_n_paraphrases() -> int:
    return int(inspect.signature(make_edit).parameters["n_paraphrases"].default)


@dataclass(frozen=True)
class MethodOverrides:
    """Changes to a fitted method's settings, for ablations (``sake-lens eval --paraphrases``,
    ``--edit-config``, ``--gate-config``); empty: the method as defined.

    Attributes:
        n_paraphrases: paraphrases per edit (None: :func:`make_edit`'s default).
        edit: :class:`EditConfig` fields to change (``distributions`` as a dict of
            :class:`~sake_lens.prompts.distributions.DistributionConfig` fields).
        gate: :class:`GateConfig` fields to change.
        implications: also fit each edit's implied edits (:mod:`sake_lens.steer.implied`),
            served beside it behind their own gates (``sake-lens eval --implications``).
    """

    n_paraphrases: int | None = None
    edit: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    implications: bool = False

    def __post_init__(self) -> None:
        if self.n_paraphrases is not None and self.n_paraphrases < 1:
            raise ValueError(f"n_paraphrases must be >= 1 or None, got {self.n_paraphrases}.")
        for name, cls in (("edit", EditConfig), ("gate", GateConfig)):
            unknown = set(getattr(self, name)) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"Unknown {cls.__name__} fields in the {name} overrides: {sorted(unknown)}; "
                    f"known: {sorted(cls.__dataclass_fields__)}."
                )
        self.edit_config(EditConfig())  # validates the values early
        self.gate_config(GateConfig())

    def edit_config(self, base: EditConfig) -> EditConfig:
        if not self.edit:
            return base
        data = base.to_dict()
        for key, value in self.edit.items():
            if key == "distributions":
                data[key] = {**data[key], **dict(value)}
            else:
                data[key] = value
        return EditConfig.from_dict(data)

    def gate_config(self, base: GateConfig) -> GateConfig:
        return GateConfig.from_dict({**base.to_dict(), **self.gate}) if self.gate else base

    @property
    def empty(self) -> bool:
        return (
            self.n_paraphrases is None and not self.edit and not self.gate and not self.implications
        )


NO_OVERRIDES = MethodOverrides()


def _edit_config(method: str, overrides: MethodOverrides = NO_OVERRIDES) -> EditConfig:
    if method == "sake":
        base = EditConfig()  # make_edit's default
    elif method == "mean-shift":
        base = dataclasses.replace(EditConfig(), map_kind="mean-shift")
    elif method == "sake-reference":
        base = reference_config()
    else:
        raise ValueError(f"Method {method!r} fits no edit.")
    return overrides.edit_config(base)


def _gate_config(method: str, overrides: MethodOverrides = NO_OVERRIDES) -> GateConfig | None:
    """None: the registry's default gate."""
    if method == "sake-reference":
        # The paper's hand-set distance threshold; the text view is pinned to the one the
        # published reference runs used, so their results stay reproducible.
        base = GateConfig(
            kind="embedding",
            metric="euclidean",
            text="sentences",
            threshold=REFERENCE_GATE_THRESHOLD,
        )
    elif not overrides.gate:
        return None
    else:
        base = EditBook().gate
    return overrides.gate_config(base)


def _n_paraphrases(overrides: MethodOverrides) -> int:
    return overrides.n_paraphrases or _default_n_paraphrases()


def method_description(method: str, overrides: MethodOverrides = NO_OVERRIDES) -> dict[str, Any]:
    """What a method is, as JSON (recorded with the results)."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; allowed: {METHODS}.")
    out: dict[str, Any] = {"method": method}
    if method == "in-context":
        out["prefix"] = IN_CONTEXT_PREFIX
        out["all_mode"] = "each probe gets the fact its prompt is routed to by the gate"
        out["n_paraphrases"] = _n_paraphrases(overrides)
        out["gate"] = _registry_gate_description()
    if method in ("mean-shift", "sake", "sake-reference"):
        out["edit_config"] = _edit_config(method, overrides).to_dict()
        out["n_paraphrases"] = _n_paraphrases(overrides)
        gate = _gate_config(method, overrides)
        out["gate"] = gate.to_dict() if gate is not None else _registry_gate_description()
        if not overrides.empty:
            out["overrides"] = dataclasses.asdict(overrides)
    return out


def _flat_record(record: EvalRecord) -> dict[str, Any]:
    r = record.request
    return {
        "case_id": record.case_id,
        "subject": r.subject,
        "prompt": r.text,
        "ground_truth": r.old,
        "target_new": r.new,
        "rephrase_prompt": list(record.paraphrase_prompts),
        "locality_prompt": list(record.neighborhood_prompts),
    }


def fit_record_edit(
    model: Any,
    record: EvalRecord,
    method: str,
    *,
    seed: int = 0,
    overrides: MethodOverrides = NO_OVERRIDES,
) -> Edit:
    """Fit ``method``'s edit for ``record`` (no evaluation prompt among the fitting prompts).

    Raises:
        SakeLensError: the edit could not be fitted (the caller records it).
    """
    return make_edit(
        model,
        record.request,
        paraphrases=fitting_paraphrases(record, _n_paraphrases(overrides), seed),
        seed=seed,
        config=_edit_config(method, overrides),
        implications=overrides.implications,
    )


# ------------------------------------------------------------------------------ registry
def _registry_gate_description() -> dict[str, Any]:
    return {"source": "EditBook default", **EditBook().gate.to_dict()}


def _book(model: Any, method: str, features: FeatureCache, overrides: MethodOverrides) -> EditBook:
    return EditBook(model=model, gate=_gate_config(method, overrides), features=features)


class _OwnRowRouter(ScopeRouter):
    """A :class:`ScopeRouter` over several edits where each row may only reach its owner's
    edit and that edit's implied edits (through their own gates): every edit behaves as if it
    were alone. ``reach[j]`` lists the columns a row owned by column ``j`` may reach."""

    def __init__(self, *args: Any, reach: dict[int, list[int]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.owners: Tensor | None = None
        self.reach = reach or {}

    def set_owners(self, owners: Sequence[int]) -> None:
        self.owners = torch.tensor(list(owners), dtype=torch.long)

    def distances(self, features: Any, texts: Sequence[str] | None = None) -> Tensor:
        dist = super().distances(features, texts)  # (B, N)
        if self.owners is None or self.owners.shape[0] != dist.shape[0]:
            raise SakeLensError("internal: row owners were not set for this batch.")
        keep = torch.zeros_like(dist, dtype=torch.bool)
        for row in torch.nonzero(self.owners >= 0).flatten().tolist():
            owner = int(self.owners[row])
            keep[row, self.reach.get(owner, [owner])] = True
        return dist.masked_fill(~keep, float("inf"))


# ------------------------------------------------------------------------------ treatment
@dataclass
class Treatment:
    """What a method does to the model for a set of records.

    Attributes:
        method, mode: as configured.
        prefixes: per record, text put before each of its probes (in-context baseline).
        retriever: in-context ``all`` mode: routes a probe's prompt to the record whose fact
            (``prefixes[record]``) goes before it.
        edit_of: per record, the index of its edit in the steering list (-1: none).
        failures: per record index, why its edit could not be fitted.
        edits: per record, its fitted edit (None: none).
        hooks: forward hooks (router captures, then steering).
        steerers: the steering hook objects (their ``decisions`` are read back).
    """

    method: str
    mode: str
    prefixes: list[str]
    edit_of: list[int]
    failures: dict[int, str] = field(default_factory=dict)
    edits: list[Edit | None] = field(default_factory=list)
    hooks: list[tuple[str, Any]] = field(default_factory=list)
    steerers: list[Any] = field(default_factory=list)
    router: Any = None
    gate: str = "none"
    retriever: Any = None

    @property
    def steers(self) -> bool:
        return bool(self.hooks)

    def prefixes_for(self, owners: Sequence[int], prompts: Sequence[str]) -> list[str]:
        """The text put before each probe (``owners``: the probes' record indices)."""
        if self.retriever is None:
            return [self.prefixes[o] for o in owners]
        routes = self.retriever.route_texts(list(prompts)).tolist() if prompts else []
        return [self.prefixes[r] if r >= 0 else "" for r in routes]

    def before_batch(self, owners: Sequence[int]) -> None:
        """Tell a per-record router which edit each row may reach (owners: record indices)."""
        if isinstance(self.router, _OwnRowRouter):
            self.router.set_owners([self.edit_of[o] if o >= 0 else -1 for o in owners])

    def fired(self, decision: int | None, owner: int) -> tuple[bool | None, bool | None]:
        """(any edit applied, the record's own edit applied) from a row's routing decision."""
        if not self.steers or decision is None:
            return None, None
        own = self.edit_of[owner]
        return decision >= 0, own >= 0 and decision == own


def fitting_paraphrases(record: EvalRecord, n: int, seed: int = 0) -> list[str]:
    """The paraphrases a record's edit is fitted with (no evaluation prompt among them)."""
    from ..prompts.leakage import fitting_prompts

    return list(fitting_prompts(_flat_record(record), n=n, seed=seed).prompts)


def fact_router(
    records: Sequence[EvalRecord],
    gate: GateConfig,
    *,
    n_paraphrases: int,
    seed: int = 0,
    features: FeatureCache | None = None,
) -> ScopeRouter:
    """A text-only router over one scope gate per record's fact, fitted as a registry fits an
    edit's gate (the record's fitting paraphrases in scope, every other fact's paraphrases among
    the out-of-scope prompts) but without fitting any map: a gate reads only the request, the
    paraphrases and the site of an edit. Route with ``route_texts``."""
    from types import SimpleNamespace

    facts: list[Any] = [
        SimpleNamespace(
            id=f"fact-{r.case_id}",
            request=r.request,
            prompts=SimpleNamespace(paraphrases=fitting_paraphrases(r, n_paraphrases, seed)),
            site=SimpleNamespace(hook=EditConfig().site),
        )
        for r in records
    ]
    features = features or FeatureCache()
    scopes = []
    for fact in facts:
        others = (  # a fact gate calibrates against the template bank, not other edits
            []
            if gate.kind == "fact"
            else [p for f in facts if f is not fact for p in f.prompts.paraphrases]
        )
        scopes.append(fit_scope(fact, gate, features=features, neighbours=others))
    return ScopeRouter(facts, scopes, model=_TextOnly(), embedder=features.embedder)


class _TextOnly:
    """What a text-only router needs of a model: a tokenizer it never uses."""

    tokenizer = object()


def prepare_treatment(
    model: Any,
    method: str,
    mode: str,
    records: Sequence[EvalRecord],
    edits: Sequence[Edit | None] | None = None,
    failures: dict[int, str] | None = None,
    overrides: MethodOverrides = NO_OVERRIDES,
    seed: int = 0,
) -> Treatment:
    """Build the treatment of ``records`` from their fitted ``edits`` (None where fitting
    failed, with the reason in ``failures``)."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; allowed: {METHODS}.")
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; allowed: {MODES}.")
    n = len(records)
    if method == "none":
        return Treatment(method, mode, [""] * n, [-1] * n, edits=[None] * n)
    if method == "in-context":
        own = [IN_CONTEXT_PREFIX.format(prompt=r.request.text, new=r.request.new) for r in records]
        treatment = Treatment(method, mode, own, [-1] * n, edits=[None] * n)
        if mode == "all":
            gate = _gate_config(method, overrides) or EditBook().gate
            treatment.retriever = fact_router(
                records, gate, n_paraphrases=_n_paraphrases(overrides), seed=seed
            )
            treatment.gate = "retrieval by the registry's default gate over all facts"
        return treatment
    edits = list(edits or [None] * n)
    failures = dict(failures or {})
    fitted = [(i, e) for i, e in enumerate(edits) if e is not None]
    treatment = Treatment(method, mode, [""] * n, [-1] * n, failures, edits)
    if not fitted:
        return treatment
    check_edits_fit(model, [e for _, e in fitted])
    features = FeatureCache(model)  # sentence embeddings shared by every gate of the run
    if mode == "single":
        # each edit's gate as a one-edit registry fits it; one router, rows kept to their edit
        scopes: list[Scope] = []
        order: list[Edit] = []
        reach: dict[int, list[int]] = {}
        for _, e in fitted:
            book = _book(model, method, features, overrides)
            book.add(e)  # with its implied edits, if any
            first = len(order)
            for entry in book.entries:
                assert entry.scope is not None  # add() fits the gate
                order.append(entry.edit)
                scopes.append(entry.scope)
            reach[first] = list(range(first, len(order)))
        router: Any = _OwnRowRouter(
            order, scopes, model=model, embedder=features.embedder, reach=reach
        )
        treatment.gate = "each edit's own registry gate"
    else:
        book = _book(model, method, features, overrides)
        kept = []
        for i, e in fitted:
            try:
                book.add(e)
                kept.append((i, e))
            except SakeLensError as exc:  # e.g. two records editing the same subject/relation
                treatment.failures[i] = f"{type(exc).__name__}: {exc}"
                treatment.edits[i] = None
        fitted = kept
        if not fitted:
            return treatment
        order = book.active_edits()
        router = book.router(model)
        treatment.gate = "registry router over all edits"
    position = {e.id: k for k, e in enumerate(order)}
    for i, e in fitted:
        treatment.edit_of[i] = position[e.id]
    steer = steering_hooks(order, router)
    treatment.router = router
    treatment.steerers = [fn for _, fn in steer]
    treatment.hooks = list(router.hooks()) + list(steer)
    return treatment


def measured_purity(edit: Edit) -> float | None:
    """Share of target prompts where the model says the new object (also when the recipe did
    not validate them)."""
    prompts = edit.prompts
    if prompts is None or not prompts.target_predictions:
        return None
    ok = [starts_object(t, edit.request.new) for t in prompts.target_predictions]
    return sum(ok) / len(ok)


def edit_summary(edit: Edit) -> dict[str, Any]:
    """The facts about a fitted edit worth keeping with the results."""
    return {
        "id": edit.id,
        "site": edit.site.hook,
        "map": edit.map.kind,
        "purity": round(float(edit.purity), 6),
        "measured_purity": None if (p := measured_purity(edit)) is None else round(p, 6),
        "n_source": edit.n_source,
        "n_target": edit.n_target,
        "n_paraphrases": len(edit.prompts.paraphrases) if edit.prompts is not None else None,
        **(
            {
                "implied": [
                    {
                        "id": x.id,
                        "implication": list(x.implication),
                        "prompt": x.request.text,
                        "old": x.request.old,
                        "new": x.request.new,
                        "purity": round(float(x.purity), 6),
                    }
                    for x in edit.implied
                ]
            }
            if edit.implied
            else {}
        ),
    }


def fit_all(
    model: Any,
    records: Sequence[EvalRecord],
    method: str,
    *,
    seed: int = 0,
    on_done: Any = None,
    overrides: MethodOverrides = NO_OVERRIDES,
) -> tuple[list[Edit | None], dict[int, str], dict[int, tuple[float, float]]]:
    """Fit each record's edit; failures are collected, never raised. Returns (edits, failures,
    (wall, CPU) seconds per record)."""
    import time

    edits: list[Edit | None] = []
    failures: dict[int, str] = {}
    seconds: dict[int, tuple[float, float]] = {}
    for i, record in enumerate(records):
        start, cpu = time.perf_counter(), time.process_time()
        if method in ("none", "in-context"):
            edits.append(None)
        else:
            try:
                edits.append(fit_record_edit(model, record, method, seed=seed, overrides=overrides))
            except SakeLensError as exc:
                edits.append(None)
                failures[i] = f"{type(exc).__name__}: {exc}"
                log.info("record %s: edit not fitted (%s)", record.case_id, failures[i])
        seconds[i] = (time.perf_counter() - start, time.process_time() - cpu)
        if on_done is not None:
            on_done(i)
    return edits, failures, seconds
