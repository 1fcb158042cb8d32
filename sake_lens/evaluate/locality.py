r"""Locality probes and their measures: what an edit must leave as the unedited model had it.

Locality is measured against the *unedited* model (the EasyEdit / ZsRE convention: the edited
model's output equals the unedited model's), so it needs no ground truth and works on facts a
small model does not know. Three sets of prompts, each read from the versioned data file
``resources/locality.yaml``:

* **relation** — the edit's *subject* asked through other relations that fit its kind (a
  person's birthplace, employer, religion... after an edit of their native language; never
  "Apple A5 was born in"). The kind of subject comes from the edited relation
  (``subject_kinds``); the candidate relations from ``kind_relations``, minus the edited
  relation, any relation whose object is of the same kind (a native-language edit may
  rightly move "the languages X speaks") and any relation it implies
  (:data:`~sake_lens.prompts.relations.IMPLIED`). Each is asked through a template of
  ``relation_templates``, written for the harness and used by no gate or paraphrase bank.
* **neighbour** — CounterFact's neighbourhood prompts (other subjects, same relation).
* **text** — unrelated prompts (a fixed list, sampled per record).

Per probe: the next token unchanged (top-1), the greedy continuation unchanged (8 tokens), and
$\mathrm{KL}(p_\text{unedited} \,\|\, p_\text{edited})$ of the next-token distribution (nats).
A probe where no edit fired and no prefix was added *is* the unedited run (the gate decides at
the prompt's last token and holds its decision through generation): it scores unchanged with a
KL of 0 without a second forward pass.

The same file holds **passages** that name the subject: the edited model's perplexity on them
(their first sentence is the prompt where a gate decides) shows damage where gates do fire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from torch import Tensor

from ..errors import DataError
from ..prompts.request import EditRequest
from ..prompts.text import normalize_template

__all__ = [
    "LocalityData",
    "locality_data",
    "relation_probes",
    "text_probes",
    "passage_probes",
    "kl_divergence",
]


@dataclass(frozen=True)
class LocalityData:
    """The contents of ``resources/locality.yaml`` (validated)."""

    version: int
    subject_kinds: dict[str, str]
    kind_relations: dict[str, tuple[str, ...]]
    relation_templates: dict[str, tuple[str, ...]]
    unrelated_prompts: tuple[str, ...]
    passages: tuple[str, ...]


def _validate(raw: Any) -> LocalityData:
    from ..prompts.relations import RELATIONS

    if not isinstance(raw, dict):
        raise DataError("locality.yaml must hold a mapping.")
    missing = {
        "version",
        "subject_kinds",
        "kind_relations",
        "relation_templates",
        "unrelated_prompts",
        "passages",
    }
    missing -= set(raw)
    if missing:
        raise DataError(f"locality.yaml lacks {sorted(missing)}.")
    kinds = {str(k): str(v) for k, v in raw["subject_kinds"].items()}
    relations = {str(k): tuple(map(str, v)) for k, v in raw["kind_relations"].items()}
    for rid, kind in kinds.items():
        if rid not in RELATIONS:
            raise DataError(f"locality.yaml: subject_kinds names unknown relation {rid}.")
        if kind not in relations:
            raise DataError(f"locality.yaml: {rid} has kind {kind!r} without kind_relations.")
    for kind, rids in relations.items():
        unknown = [r for r in rids if r not in RELATIONS]
        if unknown:
            raise DataError(f"locality.yaml: kind {kind!r} lists unknown relations {unknown}.")
    templates = {str(k): tuple(map(str, v)) for k, v in raw["relation_templates"].items()}
    bank = {
        normalize_template(t)
        for r in RELATIONS.values()
        for t in (*r.paraphrases, *r.counterfact_templates)
    }
    for rid in sorted({r for rids in relations.values() for r in rids}):
        if not templates.get(rid):
            raise DataError(f"locality.yaml: relation {rid} is probed but has no templates.")
        for t in templates[rid]:
            if t.count("{}") != 1 or normalize_template(t) in bank:
                raise DataError(
                    f"locality.yaml: {rid} template {t!r} needs one '{{}}' and must not be a "
                    "template of the relation bank (locality probes are held out from gates)."
                )
    passages = tuple(map(str, raw["passages"]))
    for p in passages:
        if p.count("{}") != 1 or ". " not in p:
            raise DataError(
                f"locality.yaml: passage {p[:40]!r}... needs one '{{}}' and 2 sentences."
            )
    return LocalityData(
        version=int(raw["version"]),
        subject_kinds=kinds,
        kind_relations=relations,
        relation_templates=templates,
        unrelated_prompts=tuple(map(str, raw["unrelated_prompts"])),
        passages=passages,
    )


@lru_cache(maxsize=1)
def locality_data() -> LocalityData:
    """The harness's locality data (``sake_lens/evaluate/resources/locality.yaml``)."""
    import yaml

    text = resources.files(__package__).joinpath("resources/locality.yaml").read_text("utf-8")
    return _validate(yaml.safe_load(text))


def _rng(request: EditRequest, seed: int, salt: str) -> random.Random:
    return random.Random(f"{salt}|{seed}|{request.subject}|{request.prompt}")


def relation_probes(request: EditRequest, n: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` prompts asking the edit's subject through other relations: ``(relation id,
    prompt)`` pairs, seeded; empty when the edited relation is not in the bank. Each
    relation is asked once while there are enough of them; when its kind has fewer than ``n``
    that fit, some are asked again through another of their templates.

    Example:
        >>> req = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
        >>> [rid for rid, _ in relation_probes(req, n=3)]  # doctest: +SKIP
        ['P19', 'P106', 'P140']
    """
    from ..prompts.relations import independent_relations, match_relation

    own = match_relation(request.prompt, objects=[request.old])
    data = locality_data()
    if own is None or own.id not in data.subject_kinds:
        return []
    free = {r.id for r in independent_relations(own)}
    candidates = [rid for rid in data.kind_relations[data.subject_kinds[own.id]] if rid in free]
    rng = _rng(request, seed, "relation")
    chosen = rng.sample(candidates, min(n, len(candidates)))
    probes = [(rid, rng.choice(data.relation_templates[rid])) for rid in chosen]
    # Fewer fitting relations than n (a product has few): ask them through their other
    # templates too, so every record gets n probes when its kind's templates allow.
    spare = [
        (rid, t) for rid in chosen for t in data.relation_templates[rid] if (rid, t) not in probes
    ]
    probes += rng.sample(spare, min(n - len(probes), len(spare))) if len(probes) < n else []
    return [(rid, t.replace("{}", request.subject, 1)) for rid, t in probes]


def text_probes(request: EditRequest, n: int = 3, seed: int = 0) -> list[str]:
    """``n`` unrelated prompts for the record (seeded)."""
    prompts = locality_data().unrelated_prompts
    return _rng(request, seed, "text").sample(list(prompts), min(n, len(prompts)))


def passage_probes(request: EditRequest, n: int = 1, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` passages naming the subject, as ``(first sentence, rest)`` (the rest keeps its
    leading space, for teacher forcing)."""
    passages = locality_data().passages
    chosen = _rng(request, seed, "passage").sample(list(passages), min(n, len(passages)))
    out = []
    for p in chosen:
        text = p.replace("{}", request.subject, 1)
        cut = text.index(". ") + 1
        out.append((text[:cut], text[cut:]))
    return out


def kl_divergence(logp_p: Tensor, logp_q: Tensor) -> float:
    r"""$\mathrm{KL}(p \| q) = \sum_i p_i (\log p_i - \log q_i)$ from two log-distributions
    over the vocabulary (nats; float64).

    Example:
        >>> import torch
        >>> p = torch.log(torch.tensor([0.5, 0.5]))
        >>> kl_divergence(p, p)
        0.0
    """
    a, b = logp_p.double(), logp_q.double()
    return max(0.0, float((a.exp() * (a - b)).sum()))
