"""Route each input to the nearest edit whose scope gate accepts it, or to none.

:class:`ScopeRouter` implements the :class:`~sake_lens.steer.hooks.Router` protocol. Inside a
forward pass it reads what its gates need through extra hooks: the token ids at
``embed.hook_in`` (the bridge passes the input ids there) for sentence-embedding gates, and the
last prompt token's hidden state at each gate layer. During :func:`~sake_lens.steer.generation.
generate` only the prompt is used (:func:`~sake_lens.steer.generation.current_step` tells where
it ends), so the decision made at the prompt holds for every generated token.

Routing is one vectorised operation over all edits: the distances of the batch to all edits
(``(batch, N)``, see :class:`~sake_lens.gate.bank.StackedStats`), divided by the edits'
thresholds; a row goes to the edit with the smallest ratio below 1 (the nearest edit in units
of its own threshold), or to none (-1); an implied edit (:mod:`sake_lens.steer.implied`) that
accepts a row and whose paraphrases are nearer to it than its edit's takes it from that edit.
Fact gates (:mod:`sake_lens.gate.fact`) contribute
$2^{e}$ with threshold 1, where $e$ is their excess; only the edits whose subject the prompt
names are scored, so their cost grows with the matches, not with the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import GateError
from ..model.sites import site_layer
from ..steer.generation import current_step
from .bank import StackedStats
from .config import is_embedding
from .embedder import SentenceEmbedder, default_embedder
from .fact import FACT, FactIndex, FactScope
from .scope import Scope, min_distance, view_features

if TYPE_CHECKING:
    from ..steer.edit import Edit

__all__ = ["ScopeRouter", "TOKENS_HOOK"]

log = logging.getLogger(__name__)

#: The bridge hook that receives the input token ids.
TOKENS_HOOK = "embed.hook_in"


def _depth(hook: str) -> float:
    layer = site_layer(hook)
    return float("inf") if layer is None else float(layer)


def _check_order(feature: str, site: str) -> None:
    """A hidden gate must read a layer the forward pass reaches before the edit's site."""
    if is_embedding(feature) or feature in (site, FACT):
        return
    if _depth(feature) >= _depth(site):
        raise GateError(
            f"The gate reads {feature!r}, which runs after the edit's site {site!r}: the router "
            "would see the previous pass's state. Use a gate layer before the site, or "
            "GateConfig(layer=None) to gate on the site itself."
        )


class ScopeRouter:
    """Routes rows to edits by their scope gates (see the module docstring).

    Args:
        edits: the edits, in the order the steering hooks index them.
        scopes: one fitted :class:`Scope` per edit.
        model: the model (its tokenizer decodes prompts for sentence-embedding gates).
        embedder: the sentence embedder (default: the bundled MiniLM).

    Attributes:
        last_routes: the ``(batch,)`` decisions of the latest :meth:`route` call.
        last_distances: the ``(batch, N)`` distances behind them.
    """

    def __init__(
        self,
        edits: Sequence[Edit],
        scopes: Sequence[Scope | FactScope],
        *,
        model: Any = None,
        embedder: SentenceEmbedder | None = None,
    ):
        if len(edits) != len(scopes):
            raise GateError(f"{len(edits)} edits but {len(scopes)} scopes; pass one per edit.")
        self.sites = [e.site.hook for e in edits]
        self.n = len(scopes)
        self.thresholds = torch.tensor([s.threshold for s in scopes], dtype=torch.float64)
        groups: dict[tuple[str, str, int], list[int]] = {}
        fact_idx: list[int] = []
        for i, s in enumerate(scopes):
            if isinstance(s, FactScope):
                fact_idx.append(i)
            else:
                groups.setdefault((s.feature, s.stats.metric, s.stats.dim), []).append(i)
        self.groups = [
            (feature, torch.tensor(idx), StackedStats([scopes[i].stats for i in idx]))  # type: ignore[union-attr]
            for (feature, _, _), idx in groups.items()
        ]
        self.fact_idx = torch.tensor(fact_idx, dtype=torch.long)
        self.facts = FactIndex([scopes[i] for i in fact_idx], embedder) if fact_idx else None  # type: ignore[misc]
        self.features = list(dict.fromkeys(g[0] for g in self.groups))
        for edit, scope in zip(edits, scopes):
            _check_order(scope.feature, edit.site.hook)
        self.tokenizer = getattr(model, "tokenizer", None)
        self.reads_text = self.facts is not None or any(is_embedding(f) for f in self.features)
        if self.reads_text and self.tokenizer is None:
            raise GateError(
                "Sentence-embedding gates decode the prompt from its tokens and need the "
                "model's tokenizer: pass model=... (e.g. book.router(model))."
            )
        self.embedder = embedder
        self.edit_ids = [str(getattr(e, "id", i)) for i, e in enumerate(edits)]
        column = {eid: i for i, eid in enumerate(self.edit_ids)}
        pairs = [
            (i, column[parent])
            for i, e in enumerate(edits)
            if (parent := getattr(e, "implied_by", "")) and parent in column
        ]
        #: (implied edit, its edit) column pairs: an implied edit that accepts a row and is
        #: nearer to it than its edit (by fact-gate distance to the paraphrases) takes it from
        #: its edit: a two-hop prompt also names the edit's relation, so both may accept it.
        self.implied_pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        self._tokens: tuple[Tensor, tuple[int, ...] | None] | None = None
        self._hidden: dict[str, Tensor] = {}
        self._here: dict[str, Tensor] = {}
        self.last_routes: Tensor | None = None
        self.last_paraphrase_distance: Tensor | None = None
        self.last_distances: Tensor | None = None
        self.last_texts: list[str] | None = None

    # --------------------------------------------------------------------- capture hooks
    def _capture_tokens(self, tokens: Tensor, hook: Any) -> None:
        step = current_step()
        if step is None:
            self._tokens = (tokens.detach().cpu(), None)
        elif step.positions_of_last_prompt_token is not None:
            if step.prompt_tokens is not None:  # a long prompt's last span: not all of it
                self._tokens = (step.prompt_tokens.detach().cpu(), step.pad_lengths)
                return
            n_prompt = step.padded_prompt_length - step.offset
            self._tokens = (tokens[:, :n_prompt].detach().cpu(), step.pad_lengths)

    def _capture_hidden(self, feature: str) -> Any:
        def capture(act: Tensor, hook: Any) -> None:
            step = current_step()
            if step is None:
                self._hidden[feature] = act[:, -1].detach()
            elif step.positions_of_last_prompt_token is not None:
                self._hidden[feature] = act[:, step.positions_of_last_prompt_token[0]].detach()

        return capture

    def hooks(self) -> list[tuple[str, Any]]:
        """The capture hooks: tokens at ``embed.hook_in``, hidden states at gate layers."""
        out: list[tuple[str, Any]] = (
            [(TOKENS_HOOK, self._capture_tokens)] if self.reads_text else []
        )
        out += [(f, self._capture_hidden(f)) for f in self.features if not is_embedding(f)]
        return out

    # --------------------------------------------------------------------- features
    def prompt_texts(self) -> list[str]:
        """The prompts of the current forward pass, decoded without padding."""
        if self._tokens is None:
            raise GateError(
                f"No token ids were captured at {TOKENS_HOOK!r} before routing: attach the "
                "router's hooks (steered(model, edits, router=router) does) and run a forward "
                "pass on token ids."
            )
        tokens, pads = self._tokens
        assert self.tokenizer is not None
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id or 0
        texts = []
        for i, row in enumerate(tokens.tolist()):
            if pads is not None:
                row = row[pads[i] :]
            else:
                start = 0
                while start < len(row) - 1 and row[start] == pad_id:
                    start += 1
                row = row[start:]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    def _embed(self, texts: Sequence[str], feature: str) -> list[Tensor]:
        self.embedder = self.embedder or default_embedder()
        if self.facts is not None:
            self.facts.embedder = self.embedder
        return view_features(lambda t, _: self.embedder.embed(t), texts, feature)

    def _fact_embedder(self) -> None:
        self.embedder = self.embedder or default_embedder()
        assert self.facts is not None
        self.facts.embedder = self.embedder

    def _features(self, acts: Tensor | None, site: str | None) -> dict[str, list[Tensor]]:
        feats: dict[str, list[Tensor]] = {}
        texts = self.prompt_texts() if self.reads_text else []
        self.last_texts = texts or None
        if self.facts is not None:
            feats[FACT] = [torch.empty(len(texts), 0)]  # scored from the texts (see distances)
        for feature in self.features:
            if is_embedding(feature):
                feats[feature] = self._embed(texts, feature)
            elif feature == site and acts is not None:
                feats[feature] = [acts]
            elif feature in self._hidden:
                feats[feature] = [self._hidden[feature]]
        return feats

    # --------------------------------------------------------------------- routing
    def distances(
        self, features: dict[str, list[Tensor]], texts: Sequence[str] | None = None
    ) -> Float[Tensor, "batch n"]:
        """``(batch, N)`` distances to every edit (inf where a feature is missing).

        ``features`` maps a feature key to its views (one ``(batch, f)`` tensor each; the
        distance is the smallest over the views). Fact gates are scored from ``texts`` (the
        prompts) as $2^{e}$ (see the module docstring).
        """
        batch = {int(x.shape[0]) for views in features.values() for x in views}
        if len(batch) != 1:
            raise GateError(f"Features disagree on the batch size: {sorted(batch)}.")
        dist = torch.full((batch.pop(), self.n), float("inf"), dtype=torch.float64)
        for feature, idx, bank in self.groups:
            if feature in features:
                dist[:, idx] = min_distance(bank, features[feature])
        self.last_paraphrase_distance = None
        if self.facts is not None and texts is not None:
            self._fact_embedder()
            dist[:, self.fact_idx] = torch.exp2(self.facts.excess(texts))
            assert self.facts.last_distance is not None
            near = torch.full_like(dist, float("inf"))
            near[:, self.fact_idx] = self.facts.last_distance
            self.last_paraphrase_distance = near
        return dist

    def decide(
        self, dist: Float[Tensor, "batch n"], site: str | None = None
    ) -> Int[Tensor, " batch"]:
        """Per row, the accepted edit with the smallest ``distance / threshold``, else -1.

        With ``site``, a row whose chosen edit lives at another site gets -1 here.
        """
        ratio = dist / self.thresholds  # (B, N)
        ratio = torch.where(ratio < 1.0, ratio, torch.full_like(ratio, float("inf")))
        near = self.last_paraphrase_distance
        if self.implied_pairs.numel() and near is not None and near.shape == ratio.shape:
            child, parent = self.implied_pairs[:, 0], self.implied_pairs[:, 1]
            closer = near[:, child] < near[:, parent]
            accepted = (torch.isfinite(ratio[:, child]) & closer).to(ratio.dtype)  # (B, pairs)
            taken = torch.zeros_like(ratio).index_add_(1, parent, accepted) > 0
            ratio = ratio.masked_fill(taken, float("inf"))
        best_ratio, best = ratio.min(dim=1)
        best = best.masked_fill(~torch.isfinite(best_ratio), -1)
        if site is not None:
            if site not in self._here:  # edits at this site, plus a trailing False for -1
                self._here[site] = torch.tensor([s == site for s in self.sites] + [False])
            best = best.masked_fill(~self._here[site][best], -1)
        return best

    def route(self, acts: Float[Tensor, "batch d"], site: str) -> Int[Tensor, " batch"]:
        """The Router protocol: per row, the index of its edit, or -1."""
        feats = self._features(acts, site)
        if not feats:
            best = torch.full((acts.shape[0],), -1, dtype=torch.long)
            self.last_distances = torch.full((acts.shape[0], self.n), float("inf"))
        else:
            dist = self.distances(feats, self.last_texts)
            if dist.shape[0] != acts.shape[0]:
                raise GateError(
                    f"The gate features have {dist.shape[0]} rows but the activations at "
                    f"{site!r} have {acts.shape[0]}; the captured tokens belong to another pass."
                )
            best = self.decide(dist, site)
            self.last_distances = dist
        self.last_routes = best
        return best.to(acts.device)

    def route_texts(self, texts: Sequence[str]) -> Int[Tensor, " batch"]:
        """Route prompts by text alone (fact and sentence-embedding gates; no forward pass)."""
        if not all(is_embedding(f) for f in self.features):
            raise GateError("route_texts() needs fact or sentence-embedding gates; run a forward.")
        texts = list(texts)
        feats = {f: self._embed(texts, f) for f in self.features}
        if self.facts is not None:
            feats[FACT] = [torch.empty(len(texts), 0)]
        dist = self.distances(feats, texts)
        self.last_distances = dist
        self.last_routes = self.decide(dist)
        return self.last_routes

    def explain(self, text: str) -> list[dict[str, Any]]:
        """Why ``text`` goes where it goes: one dict per candidate edit.

        Fact gates list the edits whose subject the prompt names, with the relation margin,
        the distance to the nearest paraphrase, both thresholds and whether the gate accepts;
        other gates list every edit with its distance and threshold. The edit the prompt is
        routed to has ``"chosen": True``. Text-only gates (fact, sentence embedding).
        """
        route = int(self.route_texts([text])[0])
        assert self.last_distances is not None
        dist = self.last_distances[0]
        rows: list[dict[str, Any]] = []
        if self.facts is not None:
            for row in self.facts.explain(text):
                col = int(self.fact_idx[row.pop("column")])
                rows.append({"edit": self.edit_ids[col], "gate": FACT, **row, "index": col})
        fact_cols = set(self.fact_idx.tolist())
        for col in range(self.n):
            if col not in fact_cols:
                d, t = float(dist[col]), float(self.thresholds[col])
                rows.append(
                    {
                        "edit": self.edit_ids[col],
                        "gate": "distance",
                        "distance": d,
                        "threshold": t,
                        "accepted": d < t,
                        "index": col,
                    }
                )
        for row in rows:
            row["chosen"] = row.pop("index") == route
        return rows
