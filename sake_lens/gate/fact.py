r"""Fact-keyed gates: an edit fires on its *fact* — its subject asked through its relation.

A sentence embedding of "The capital of Japan is" sits close to "The official language of
Japan is": the subject's name dominates it, and a gate on that embedding alone fires on every
question about the subject. The fact gate factorises the decision:

1. **Subject.** The edit's subject must occur in the prompt as whole words, compared
   case-, accent- and Unicode-insensitively (:func:`fold`).
2. **Relation.** Every occurrence of the subject is replaced by a marker
   (:data:`SUBJECT_MARK`), and the masked prompt — in full, each of its last sentences and
   quoted spans that contain the subject — is embedded. A view $v$ is compared with the edit's
   own masked paraphrases $P$ and with the masked templates of the relations the edit must
   leave alone $N$ (every relation of the bank except the edit's own, those with the same kind
   of object and those it :data:`~sake_lens.prompts.relations.IMPLIED`, plus sentences
   that merely mention a subject, :data:`~sake_lens.gate.out_of_scope.MENTION_TEMPLATES`):

   $$d_P(v) = \min_{p \in P} \lVert v - p \rVert, \qquad
     d_N(v) = \min_{n \in N} \lVert v - n \rVert, \qquad m(v) = d_N(v) - d_P(v).$$

   The view is accepted when its margin $m(v)$ exceeds $m^\*$ (it is nearer the edit's
   relation than any other relation, by a calibrated amount) and $d_P(v) < c^\*$ (it is near
   the relation at all, not just far from the others). The prompt is accepted when one of its
   views is.

Both thresholds are conformal quantiles over the negative templates (each scored against the
other negatives, leaving itself out): $m^\*$ at ``GateConfig.fpr`` (10 % by default),
$c^\*$ at ``GateConfig.distance_fpr`` (5 %). Nothing depends on the other edits of a
registry, so adding or removing an edit never changes another edit's routing.

The decision is summarised as one number, the *excess*
$e = \min_v \max(m^\* - m(v),\ d_P(v) - c^\*)$ (accept when $e < 0$); the router compares
edits by $2^{e}$ against a threshold of 1, so that among several accepted edits of one
subject the one with the clearest margin wins.

Two-hop prompts through the edited fact ("The capital of the country where the Eiffel Tower
is located is") are accepted because, masked, they are nearer the edit's own relation ("X is
located in the country of") than any relation it must leave alone; other facts of the subject
("The Eiffel Tower was built in the year") are nearer another relation's templates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import GateError
from .calibrate import Calibration, auroc
from .config import MAX_QUOTES, MAX_SENTENCES, GateConfig
from .embedder import SentenceEmbedder, default_embedder
from .out_of_scope import MENTION_TEMPLATES
from .scope import in_scope_prompts, quoted_spans, sentences

if TYPE_CHECKING:
    from ..steer.edit import Edit

__all__ = [
    "FactScope",
    "FactIndex",
    "TemplateBank",
    "SUBJECT_MARK",
    "FACT",
    "fold",
    "find_subject",
    "relation_views",
    "template_bank",
    "fit_fact_scope",
]

log = logging.getLogger(__name__)

#: Feature key of the fact gate.
FACT = "fact"
#: What the subject is replaced with before the relation is embedded (the embedder is
#: uncased, and folded text holds no capital letters, so the marker never collides).
SUBJECT_MARK = "X"
#: Relation id of the mention templates in the template bank.
MENTION = "mention"

_QUOTE_MAP = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "}
)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=16384)
def fold(text: str) -> str:
    """Compatibility-normalised, accent-stripped, case-folded text with collapsed spaces.

    Example:
        >>> fold("The  Capital of  SÃO Tomé")
        'the capital of sao tome'
    """
    text = unicodedata.normalize("NFKD", text.translate(_QUOTE_MAP))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _SPACES.sub(" ", text.casefold()).strip()


@lru_cache(maxsize=8192)
def _subject_pattern(folded_subject: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(folded_subject) + r"(?!\w)")


def find_subject(text: str, subject: str) -> bool:
    """Whether ``subject`` occurs in ``text`` as whole words (see :func:`fold`).

    Example:
        >>> find_subject("the capital of japan is", "Japan"), find_subject("Japanese food", "Japan")
        (True, False)
    """
    s = fold(subject)
    t = fold(text)
    return bool(s) and s in t and _subject_pattern(s).search(t) is not None


def relation_views(text: str, subject: str) -> list[str] | None:
    """The masked views of ``text`` a fact gate embeds, or None when the subject is absent.

    The views are the whole folded text with the subject replaced by :data:`SUBJECT_MARK`,
    then each of its last sentences and quoted spans that still contain the marker.

    Example:
        >>> relation_views("It rained. The capital of Japan is", "Japan")
        ['it rained. the capital of X is', 'the capital of X is']
    """
    s = fold(subject)
    t = fold(text)
    if not s or s not in t:
        return None
    masked, n = _subject_pattern(s).subn(SUBJECT_MARK, t)
    if n == 0:
        return None
    parts = sentences(masked)[-MAX_SENTENCES:] + quoted_spans(masked)[-MAX_QUOTES:]
    return list(dict.fromkeys([masked, *(p for p in parts if SUBJECT_MARK in p)]))


def _core_view(text: str, subject: str) -> str | None:
    """The last view holding the subject: the sentence that asks about it."""
    views = relation_views(text, subject)
    if views is None:
        return None
    inner = [v for v in views[1:] if v != views[0]]
    return inner[-1] if inner else views[0]


def _mask_template(template: str) -> str:
    return fold(template).replace("{}", SUBJECT_MARK, 1)


@dataclass(frozen=True)
class TemplateBank:
    """Masked templates of every relation of the bank plus the mention templates.

    Attributes:
        relation_ids: per template, its relation's Wikidata id (or ``"mention"``).
        texts: the masked, folded templates.
        hash: SHA-256 of both (saved with each fact gate, which was calibrated against it).
    """

    relation_ids: tuple[str, ...]
    texts: tuple[str, ...]
    hash: str

    def mask(self, relations: Sequence[str]) -> Tensor:
        """Boolean mask of the templates whose relation is in ``relations``."""
        keep = set(relations)
        return torch.tensor([r in keep for r in self.relation_ids], dtype=torch.bool)


@lru_cache(maxsize=1)
def template_bank() -> TemplateBank:
    """The :class:`TemplateBank` of :mod:`sake_lens.prompts.relations` (cached)."""
    from ..prompts.relations import RELATIONS

    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    for rid, rel in sorted(RELATIONS.items()):
        for t in (*rel.paraphrases, *rel.counterfact_templates):
            masked = _mask_template(t)
            if masked not in seen:
                seen.add(masked)
                ids.append(rid)
                texts.append(masked)
    for t in MENTION_TEMPLATES:
        masked = _mask_template(t)
        if masked not in seen:
            seen.add(masked)
            ids.append(MENTION)
            texts.append(masked)
    digest = hashlib.sha256(json.dumps([ids, texts]).encode()).hexdigest()
    return TemplateBank(tuple(ids), tuple(texts), digest)


_BANK_FEATURES: dict[int, tuple[SentenceEmbedder, str, Tensor]] = {}


def _bank_features(embedder: SentenceEmbedder) -> Float[Tensor, "m f"]:
    bank = template_bank()
    hit = _BANK_FEATURES.get(id(embedder))
    if hit is None or hit[0] is not embedder or hit[1] != bank.hash:
        hit = (embedder, bank.hash, embedder.embed(list(bank.texts)))
        _BANK_FEATURES[id(embedder)] = hit
    return hit[2]


def negative_relations(request: Any) -> tuple[str, ...]:
    """The relation ids (and ``"mention"``) a fact gate for ``request`` calibrates against."""
    from ..prompts.relations import independent_relations, match_relation

    own = match_relation(request.prompt, objects=[request.old])
    return (*sorted(r.id for r in independent_relations(own)), MENTION)


@dataclass
class FactScope:
    """The fitted fact gate of one edit (see the module docstring).

    Attributes:
        config: the gate's configuration (``kind="fact"``).
        subject: the edit's subject as written.
        relation: the edit's relation id in the bank (None when unknown).
        negatives: the relation ids (and ``"mention"``) whose templates are the negatives.
        positives: ``(n, f)`` embeddings of the edit's masked paraphrases.
        margin: $m^\\*$, the margin a view must exceed.
        cap: $c^\\*$, the distance to the nearest paraphrase a view must stay below.
        calibration: the report (``threshold`` is 1: the router compares $2^e$ with it).
        bank_hash: the template bank the thresholds were calibrated against.
        prompts_hash: SHA-256 of the in-scope prompts used.
    """

    config: GateConfig
    subject: str
    relation: str | None
    negatives: tuple[str, ...]
    positives: Tensor
    margin: float
    cap: float
    calibration: Calibration
    bank_hash: str
    prompts_hash: str = ""
    _negative_mask: Tensor | None = field(default=None, repr=False, compare=False)

    feature = FACT

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def negative_mask(self) -> Tensor:
        if self._negative_mask is None:
            self._negative_mask = template_bank().mask(self.negatives)
        return self._negative_mask

    def measure(
        self, views: Float[Tensor, "v f"], bank_dist: Float[Tensor, "v m"]
    ) -> tuple[float, float, float]:
        """``(excess, margin, distance)`` of the best view (see the module docstring)."""
        d_pos = torch.cdist(views, self.positives).min(dim=1).values
        d_neg = bank_dist[:, self.negative_mask()].min(dim=1).values
        margin = d_neg - d_pos
        excess = torch.maximum(self.margin - margin, d_pos - self.cap)
        j = int(excess.argmin())
        return float(excess[j]), float(margin[j]), float(d_pos[j])

    def metadata(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "feature": FACT,
            "metric": self.config.metric,
            "subject": self.subject,
            "relation": self.relation,
            "negatives": list(self.negatives),
            "margin": self.margin,
            "cap": self.cap,
            "bank_hash": self.bank_hash,
            "calibration": self.calibration.to_dict(),
            "prompts_hash": self.prompts_hash,
        }

    def state_dict(self) -> dict[str, Tensor]:
        return {"positives": self.positives}

    @classmethod
    def from_saved(cls, meta: dict[str, Any], state: dict[str, Tensor]) -> FactScope:
        if "positives" not in state:
            raise GateError("A saved fact gate lacks its 'positives' tensor; re-add the edit.")
        if meta["bank_hash"] != template_bank().hash:
            log.warning(
                "The fact gate of %r was calibrated against another version of the relation "
                "template bank; its thresholds may have moved. Re-fit it (remove and re-add the "
                "edit) to calibrate against this version.",
                meta["subject"],
            )
        return cls(
            GateConfig.from_dict(meta["config"]),
            meta["subject"],
            meta["relation"],
            tuple(meta["negatives"]),
            state["positives"].to(torch.float64),
            float(meta["margin"]),
            float(meta["cap"]),
            Calibration.from_dict(meta["calibration"]),
            meta["bank_hash"],
            meta.get("prompts_hash", ""),
        )


def _quantile_above(values: Tensor, fpr: float) -> tuple[float, bool]:
    """The conformal threshold ``t`` with ``P(new > t) <= fpr`` for exchangeable values."""
    m = values.numel()
    k = math.floor(fpr * (m + 1))
    ordered = values.sort(descending=True).values
    return float(ordered[max(k, 1) - 1]), k >= 1


def _thresholds(
    positives: Tensor, negatives: Tensor, config: GateConfig
) -> tuple[float, float, Tensor, Tensor, bool]:
    """``(margin, cap, negative margins, negative distances, guaranteed)``."""
    d_pos = torch.cdist(negatives, positives).min(dim=1).values
    among = torch.cdist(negatives, negatives)
    among.fill_diagonal_(float("inf"))
    margins = among.min(dim=1).values - d_pos
    margin, ok = _quantile_above(margins, config.fpr)
    cap, _ = _quantile_above(-d_pos, config.distance_fpr)
    return margin, -cap, margins, d_pos, ok


def fit_fact_scope(
    edit: Edit,
    config: GateConfig,
    *,
    embedder: SentenceEmbedder | None = None,
    in_scope: Sequence[str] | None = None,
) -> FactScope:
    """Fit an edit's fact gate and calibrate its two thresholds (see the module docstring).

    Args:
        edit: the fitted edit (its paraphrases are the in-scope samples).
        config: a ``kind="fact"`` gate configuration.
        embedder: the sentence embedder (default: the bundled MiniLM).
        in_scope: held-out in-scope prompts for the report (default: hold out
            ``config.holdout`` of the paraphrases, refitting on all of them afterwards).

    Raises:
        GateError: the subject occurs in none of the edit's paraphrases.
    """
    embedder = embedder or default_embedder()
    request = edit.request
    subject = request.subject
    paras = in_scope_prompts(edit, config)
    cores = {p: _core_view(p, subject) for p in paras}
    missing = [p for p, v in cores.items() if v is None]
    if len(missing) == len(paras):
        raise GateError(
            f"The subject {subject!r} occurs in none of the edit's prompts, so a fact gate "
            "cannot key on it; check the request's subject, or use GateConfig(kind='embedding')."
        )
    if missing:
        log.warning("Edit %s: %d paraphrases lack the subject; skipped.", edit.id, len(missing))
    kept = [p for p, v in cores.items() if v is not None]
    bank = template_bank()
    negatives = negative_relations(request)
    parent = edit.implication[0] if getattr(edit, "implication", ()) else None
    if parent is not None and parent not in negatives:
        # an implied edit must leave its edit's own prompts to it ("X is located in...")
        negatives = (*negatives, parent)
    neg_x = _bank_features(embedder)[bank.mask(negatives)]
    if neg_x.shape[0] == 0:
        raise GateError(f"Edit {edit.id}: no negative templates to calibrate its fact gate.")

    def positives(prompts: Sequence[str]) -> Tensor:
        return embedder.embed(list(dict.fromkeys(str(cores[p]) for p in prompts)))

    pos_x = positives(kept)
    margin, cap, neg_margins, neg_dist, guaranteed = _thresholds(pos_x, neg_x, config)
    accepted = (neg_margins > margin) & (neg_dist < cap)
    kinds = [r for r, k in zip(bank.relation_ids, bank.mask(negatives).tolist()) if k]
    is_mention = torch.tensor([r == MENTION for r in kinds])
    by_kind = {
        "relation": float(accepted[~is_mention].double().mean()) if (~is_mention).any() else 0.0,
        "mention": float(accepted[is_mention].double().mean()) if is_mention.any() else 0.0,
    }
    cal = Calibration(
        threshold=1.0,
        fpr_target=config.fpr,
        fpr=float(accepted.double().mean()),
        n_out=int(neg_x.shape[0]),
        guaranteed=guaranteed,
        fpr_by_kind=by_kind,
    )
    if not guaranteed:
        log.warning(
            "Edit %s: only %d negative templates; the fact gate's false-positive rate %.2g is "
            "not guaranteed.",
            edit.id,
            int(neg_x.shape[0]),
            config.fpr,
        )

    # The report: held-out in-scope prompts, thresholds refitted without them.
    held = [p for p in (in_scope or []) if relation_views(p, subject) is not None]
    train = kept
    if not in_scope:
        rng = random.Random(f"{config.seed}|{edit.id}")
        candidates = [p for p in kept if p != request.text]
        n_held = round(config.holdout * len(kept))
        if n_held >= 1 and len(kept) - n_held >= 2:
            held = rng.sample(candidates, min(n_held, len(candidates)))
            train = [p for p in kept if p not in set(held)]
    if held:
        report = FactScope(
            config, subject, None, negatives, positives(train), 0.0, 0.0, cal, bank.hash
        )
        report.margin, report.cap, r_margins, _, _ = _thresholds(report.positives, neg_x, config)
        measured = [m[0] for m in FactIndex([report], embedder)._measure_all(held)]
        excess = torch.tensor([e for _, e, _, _ in measured])
        held_margins = torch.tensor([margin for _, _, margin, _ in measured])
        cal = Calibration(
            **{
                **cal.to_dict(),
                "tpr": float((excess < 0).double().mean()),
                "auroc": auroc(-held_margins, -r_margins),
                "n_in": len(held),
            }
        )
    from ..prompts.relations import match_relation

    own = match_relation(request.prompt, objects=[request.old])
    digest = hashlib.sha256(json.dumps([kept, held]).encode()).hexdigest()
    return FactScope(
        config,
        subject,
        own.id if own is not None else None,
        negatives,
        pos_x,
        margin,
        cap,
        cal,
        bank.hash,
        digest,
    )


class FactIndex:
    """Fact gates of many edits, scored together: subjects are found by string search, and
    each distinct (prompt, subject) pair is masked and embedded once.

    Args:
        scopes: the fact gates, in the router's column order.
        embedder: the sentence embedder (default: the bundled MiniLM).
    """

    def __init__(self, scopes: Sequence[FactScope], embedder: SentenceEmbedder | None = None):
        self.scopes = list(scopes)
        self.embedder = embedder
        self.by_subject: dict[str, list[int]] = {}
        self.last_distance: Tensor | None = None
        for i, s in enumerate(self.scopes):
            self.by_subject.setdefault(fold(s.subject), []).append(i)

    def _embedder(self) -> SentenceEmbedder:
        self.embedder = self.embedder or default_embedder()
        return self.embedder

    def _matches(self, text: str) -> list[str]:
        t = fold(text)
        return [s for s in self.by_subject if s in t and _subject_pattern(s).search(t)]

    def _measure_all(self, texts: Sequence[str]) -> list[list[tuple[int, float, float, float]]]:
        """Per text, ``(column, excess, margin, distance)`` for every edit whose subject it
        names. Every masked view of the batch is embedded in one call."""
        pairs = [
            (row, subject, views)
            for row, text in enumerate(texts)
            for subject in self._matches(text)
            if (views := relation_views(text, subject)) is not None
        ]
        out: list[list[tuple[int, float, float, float]]] = [[] for _ in texts]
        if not pairs:
            return out
        embedder = self._embedder()
        flat = [v for _, _, views in pairs for v in views]
        x_all = embedder.embed(flat)
        bank_all = torch.cdist(x_all, _bank_features(embedder))
        start = 0
        for row, subject, views in pairs:
            x = x_all[start : start + len(views)]
            bank_dist = bank_all[start : start + len(views)]
            start += len(views)
            for i in self.by_subject[subject]:
                out[row].append((i, *self.scopes[i].measure(x, bank_dist)))
        return out

    def excess(self, texts: Sequence[str]) -> Float[Tensor, "batch n"]:
        """Per text and edit, the excess $e$ (``inf`` where the subject is absent).

        The distances $d_P$ of the same views to each edit's paraphrases are kept in
        :attr:`last_distance` (the router compares an implied edit with its edit by them).
        """
        out = torch.full((len(texts), len(self.scopes)), float("inf"), dtype=torch.float64)
        near = torch.full_like(out, float("inf"))
        for row, measured in enumerate(self._measure_all(texts)):
            for i, e, _, d in measured:
                out[row, i] = e
                near[row, i] = d
        self.last_distance = near
        return out

    def explain(self, text: str) -> list[dict[str, Any]]:
        """One dict per edit whose subject ``text`` names: its scores and thresholds."""
        return [
            {
                "column": i,
                "subject": self.scopes[i].subject,
                "subject_found": True,
                "margin": m,
                "margin_threshold": self.scopes[i].margin,
                "distance": d,
                "distance_threshold": self.scopes[i].cap,
                "excess": e,
                "accepted": e < 0,
            }
            for i, e, m, d in self._measure_all([text])[0]
        ]
