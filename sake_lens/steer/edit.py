"""An edit: a fitted transport map at a site, built from an edit request.

:func:`fit_edit` runs the whole SAKE pipeline for one fact: paraphrases -> source and target
prompts -> validated target samples -> activations at the site (one batched pass) -> the
transport map, checked after fitting.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

from ..collect.activations import collect_activations
from ..errors import DistributionError, SakeLensError
from ..model.loading import model_id as get_model_id
from ..model.sites import FINAL_SITE, Site, resolve_site
from ..model.tokens import bos_convention, object_first_token, starts_object
from ..prompts.distributions import DistributionConfig, PromptSet, build_prompt_sets, prompts_hash
from ..prompts.request import EditRequest
from ..transport import MAP_KINDS, TransportMap, make_map
from .continuation import collect_through_object, fit_continuation, object_token_ids

__all__ = ["EditConfig", "Edit", "LowPurityError", "fit_edit"]

log = logging.getLogger(__name__)

GENERATION_MODES = ("prompt", "object", "generated")


@dataclass(frozen=True)
class EditConfig:
    """How an edit is fitted and applied.

    Attributes:
        site: hook name where the map reads and writes (default: the final normalised stream).
        map_kind: ``gaussian`` (SAKE), ``diagonal`` or ``mean-shift``.
        reg: regulariser of the Gaussian/diagonal map, relative to the data's mean variance
            (default 100: on CounterFact dev records a strongly regularised map — close to a
            mean shift off the data's span — carries the edit to paraphrases and doubt
            follow-ups far better than reg <= 10; see docs/concepts/defaults.md).
        rank: keep only the ``rank`` strongest directions of the Gaussian map.
        alpha: steering strength, ``h <- h + alpha (T(h) - h)`` (default 2.5: moving past the
            target mean generalises to unseen paraphrases far better than 1.0 on the default
            model; the scope gate keeps it off unrelated prompts).
        generation: ``prompt`` applies the map at the prompt's last token only (the paper);
            ``object`` (default) also fits continuation maps that steer each generated token
            while the generation spells the new object (:mod:`sake_lens.steer.continuation`:
            a multi-token object is carried whole); ``generated`` applies the map at every
            generated token.
        object_tokens: ``object`` mode: at most this many continuation maps (one per object
            token after the first, and one after the whole object that ends the word).
        object_alpha: strength of the continuation maps (default 1.0: they follow a token the
            model has already written, so moving to the target distribution is enough; 2.0
            overshoots the word's end into end-of-text).
        distributions: how the source and target prompts are built.
        batch_size: prompts per forward pass when collecting activations.
        implied_alpha: steering strength of the edit's implied edits
            (:mod:`sake_lens.steer.implied`), which replaces ``alpha`` in their config.
    """

    site: str = FINAL_SITE
    map_kind: str = "gaussian"
    reg: float = 100.0
    rank: int | None = None
    alpha: float = 2.5
    generation: str = "object"
    object_tokens: int = 4
    object_alpha: float = 1.0
    distributions: DistributionConfig = field(default_factory=DistributionConfig)
    batch_size: int = 32
    implied_alpha: float = 2.5

    def __post_init__(self) -> None:
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f"Unknown map_kind {self.map_kind!r}; allowed: {sorted(MAP_KINDS)}.")
        if self.generation not in GENERATION_MODES:
            raise ValueError(
                f"Unknown generation mode {self.generation!r}; allowed: {GENERATION_MODES}."
            )
        for name in ("alpha", "object_alpha", "implied_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 4.0):
                raise ValueError(f"{name} must be a number in [0, 4], got {value!r}.")
        if not float(self.reg) > 0:
            raise ValueError(f"reg must be > 0, got {self.reg!r}.")
        if self.rank is not None and int(self.rank) < 1:
            raise ValueError(f"rank must be None or >= 1, got {self.rank!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not (isinstance(self.object_tokens, int) and 0 <= self.object_tokens <= 16):
            raise ValueError(
                f"object_tokens must be an int in [0, 16], got {self.object_tokens!r}."
            )

    def make_map(self) -> TransportMap:
        if self.map_kind == "gaussian":
            return make_map("gaussian", reg=self.reg, rank=self.rank)
        if self.map_kind == "diagonal":
            return make_map("diagonal", reg=self.reg)
        return make_map(self.map_kind)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["distributions"] = self.distributions.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditConfig:
        data = dict(data)
        data["distributions"] = DistributionConfig.from_dict(data.get("distributions", {}))
        return cls(**data)


def _ascii_base(char: str) -> str:
    """``char`` without its accents when its letters are Latin (ë -> e, ﬁ -> fi), else itself."""
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and base.isascii() else char


class LowPurityError(DistributionError):
    """Too few target samples make the model say the new object (purity below ``min_purity``).

    A :class:`~sake_lens.errors.DistributionError` that keeps its numbers, so a caller can retry
    with stronger target contexts (:func:`sake_lens.steer.workflow.make_edit`) or name the
    options that fix it (``sake-lens edit``).
    """

    def __init__(
        self,
        *,
        n_kept: int,
        n_total: int,
        min_purity: float,
        new: str,
        advice: str,
        retried: str = "",
    ):
        self.n_kept, self.n_total, self.min_purity, self.new = n_kept, n_total, min_purity, new
        self.advice, self.retried = advice, retried
        super().__init__(f"{self.summary}. {advice}")

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments: pickle them in order
        args = (self.n_kept, self.n_total, self.min_purity, self.new, self.advice, self.retried)
        return (_low_purity, args)

    @property
    def purity(self) -> float:
        return self.n_kept / self.n_total if self.n_total else 0.0

    @property
    def summary(self) -> str:
        """What was refused, without the advice: "Only 3/40 target samples ... (purity ...)"."""
        if self.purity < self.min_purity:
            why = f"purity {self.purity:.0%} < min_purity {self.min_purity:.0%}"
        else:
            why = f"purity {self.purity:.0%}; a map needs at least 2 valid target samples"
        also = f", also after a retry with {self.retried}" if self.retried else ""
        return (
            f"Only {self.n_kept}/{self.n_total} target samples make the model say "
            f"{self.new!r} ({why}){also}"
        )


def _low_purity(
    n_kept: int, n_total: int, min_purity: float, new: str, advice: str, retried: str
) -> LowPurityError:
    return LowPurityError(
        n_kept=n_kept,
        n_total=n_total,
        min_purity=min_purity,
        new=new,
        advice=advice,
        retried=retried,
    )


def _slug(text: str) -> str:
    """The readable part of an edit id: "Zoë Saldaña" -> "zoe-saldana", "東京" -> "東京".

    Latin letters lose their accents; letters of other scripts are kept; everything else
    becomes "-".
    """
    plain = ""
    for char in unicodedata.normalize("NFC", text.casefold()):
        if not (unicodedata.combining(char) and plain[-1:].isascii()):  # İ -> i + U+0307
            plain += _ascii_base(char)
    return re.sub(r"[\W_]+", "-", plain).strip("-")[:40].strip("-") or "edit"


@dataclass
class Edit:
    """A fitted edit: the request, its site, its transport map and how it was made.

    Apply it with :func:`sake_lens.steer.hooks.steered` (or ``edit.steer(model)``), or add it
    to an edit registry to serve it beside others.
    """

    request: EditRequest
    site: Site
    map: TransportMap
    config: EditConfig
    model_id: str
    d_model: int
    prepend_bos: bool
    compatibility_mode: bool
    purity: float
    n_source: int
    n_target: int
    prompts_hash: str
    id: str = ""
    created: str = ""
    #: ``generation="object"``: the new object's token ids and one continuation map per
    #: object token after the first (:mod:`sake_lens.steer.continuation`).
    object_ids: tuple[int, ...] = ()
    continuation: tuple[TransportMap, ...] = ()
    #: An implied edit (:mod:`sake_lens.steer.implied`): the id of the edit it follows from,
    #: and the (relation id, attribute) it carries, e.g. ``("P17", "capital")``.
    implied_by: str = ""
    implication: tuple[str, ...] = ()
    #: Set when the first fit was refused for low target purity and a retry with stronger
    #: target contexts and more paraphrases succeeded (:func:`sake_lens.steer.workflow.make_edit`):
    #: the refused purity, and the target templates and paraphrase count of the retry.
    retry: dict[str, Any] | None = None
    #: The implied edits fitted with this one, until it is added to a registry (which keeps
    #: each as an entry of its own).
    implied: tuple[Edit, ...] = field(default=(), repr=False, compare=False)
    prompts: PromptSet | None = field(default=None, repr=False, compare=False)
    source_acts: torch.Tensor | None = field(default=None, repr=False, compare=False)
    target_acts: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            digest = hashlib.sha1(
                f"{self.request.to_dict()}|{self.site}|{self.prompts_hash}".encode()
            ).hexdigest()[:8]
            self.id = f"{_slug(self.request.subject)}-{digest}"
        if not self.created:
            self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def steer(self, model: Any, **kwargs: Any) -> Any:
        """Context manager: the model with this edit applied (hooks removed on exit)."""
        from .hooks import steered

        return steered(model, [self], **kwargs)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-serialisable data."""
        return {
            "id": self.id,
            "request": self.request.to_dict(),
            "site": self.site.to_dict(),
            "map": self.map.config(),
            "config": self.config.to_dict(),
            "model_id": self.model_id,
            "d_model": self.d_model,
            "prepend_bos": self.prepend_bos,
            "compatibility_mode": self.compatibility_mode,
            "purity": self.purity,
            "n_source": self.n_source,
            "n_target": self.n_target,
            "prompts_hash": self.prompts_hash,
            "created": self.created,
            "diagnostics": self.map.diagnostics(),
            "object_ids": list(self.object_ids),
            "continuation": [m.config() for m in self.continuation],
            **(
                {"implied_by": self.implied_by, "implication": list(self.implication)}
                if self.implied_by
                else {}
            ),
            **({"retry": dict(self.retry)} if self.retry else {}),
        }


def fit_edit(
    model: Any,
    request: EditRequest | dict[str, Any],
    paraphrases: Sequence[str] = (),
    *,
    config: EditConfig | None = None,
    progress: bool | None = None,
    keep_activations: bool = False,
) -> Edit:
    """Fit one edit on ``model``: the SAKE pipeline from an edit request to a transport map.

    Args:
        model: a TransformerLens model (see :func:`sake_lens.load_model`).
        request: the fact to change.
        paraphrases: more prompts of the same fact (templates with ``{}`` or filled in).
        config: site, map and distribution settings (default :class:`EditConfig`).
        keep_activations: keep the source and target activations on the edit (for plots).

    Returns:
        The fitted edit: its request, site, map, purity and the prompts it was fitted on.

    Raises:
        DistributionError: too few valid target samples (purity below ``min_purity``).
        FitError: the map could not be fitted to finite values.
        SiteError: the site is unknown or cannot steer.

    Example:
        >>> edit = fit_edit(model, EditRequest("Danielle Darrieux",  # doctest: +SKIP
        ...     "The mother tongue of {} is", "French", "English"))
    """
    if isinstance(request, dict):
        request = EditRequest.from_dict(request)
    config = config or EditConfig()
    site = resolve_site(model, config.site)
    prompts = build_prompt_sets(request, paraphrases, config.distributions)
    prepend_bos = bos_convention(model)
    through_object = config.generation == "object" and config.object_tokens > 0
    object_ids = object_token_ids(model, request.new) if through_object else ()
    if through_object:
        # One pass over prompt + new object gives the prompt's last token and every object token.
        src_all, _ = collect_through_object(
            model, prompts.source, site, object_ids, batch_size=config.batch_size
        )
        tgt_all, tgt_pred_all = collect_through_object(
            model, prompts.target, site, object_ids, batch_size=config.batch_size
        )
        source_acts, target_all, target_pred = src_all[:, 0], tgt_all[:, 0], tgt_pred_all[:, 0]
    else:
        src = collect_activations(
            model, prompts.source, [site], batch_size=config.batch_size, progress=progress
        )
        tgt = collect_activations(
            model,
            prompts.target,
            [site],
            batch_size=config.batch_size,
            predict=True,
            progress=progress,
        )
        assert tgt.predictions is not None
        source_acts, target_all, target_pred = src[site.hook], tgt[site.hook], tgt.predictions
    tokenizer = model.tokenizer
    prompts.target_predictions = [tokenizer.decode(int(t)) for t in target_pred]
    if config.distributions.validate_targets:
        first = object_first_token(tokenizer, request.new)
        prompts.kept = [
            starts_object(t, request.new, first_token=first) for t in prompts.target_predictions
        ]
    else:
        prompts.kept = [True] * len(prompts.target)
    purity = prompts.purity
    n_kept = sum(prompts.kept)
    if purity < config.distributions.min_purity or n_kept < 2:
        raise LowPurityError(
            n_kept=n_kept,
            n_total=len(prompts.kept),
            min_purity=config.distributions.min_purity,
            new=request.new,
            advice="Try stronger target templates (e.g. target_templates=('fact-twice', "
            "'repeat-3')), more paraphrases, or check that the new object "
            f"{request.new!r} is spelled as the model would say it.",
        )
    keep = torch.tensor(prompts.kept)
    target_acts = target_all[keep]
    try:
        fitted = config.make_map().fit(source_acts, target_acts)
    except SakeLensError as exc:
        raise type(exc)(f"Fitting the edit {request.text!r} -> {request.new!r}: {exc}") from exc
    continuation: tuple[TransportMap, ...] = ()
    if through_object:
        continuation = fit_continuation(
            src_all,
            tgt_all[keep],
            tgt_pred_all[keep],
            object_ids,
            config.make_map,
            tokenizer.decode,
            max_maps=config.object_tokens,
        )
    log.info(
        "Fitted %s at %s: %d source, %d/%d target samples (purity %.0f%%)",
        request.text,
        site.hook,
        len(prompts.source),
        n_kept,
        len(prompts.target),
        100 * purity,
    )
    return Edit(
        request=request,
        site=site,
        map=fitted,
        config=config,
        model_id=get_model_id(model),
        d_model=int(model.cfg.d_model),
        prepend_bos=prepend_bos,
        compatibility_mode=bool(getattr(model, "sake_lens_compatibility_mode", True)),
        purity=purity,
        n_source=len(prompts.source),
        n_target=n_kept,
        prompts_hash=prompts_hash(prompts),
        object_ids=object_ids,
        continuation=continuation,
        prompts=prompts,
        source_acts=source_acts if keep_activations else None,
        target_acts=target_acts if keep_activations else None,
    )
