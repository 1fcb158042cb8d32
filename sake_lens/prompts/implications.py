"""Logical implications of an edit: two-hop prompts whose answer changes with the edited object.

If an edit moves a person's citizenship from France to Japan, then "The capital of the country
of citizenship of X is" should move from Paris to Tokyo. :func:`implication_probes` builds such
prompts for an edit request from per-relation two-hop templates and the attribute table of
:mod:`sake_lens.prompts.world`; :func:`implication_samples` puts them in a context stating the
old fact (source distribution) or the new fact (target distribution), as the SAKE paper does.

The table's rows are candidates; :func:`verify_attribute_table` keeps the rows a given model
actually knows (its greedy next token starts the answer), so that probes are built only on
facts checked on the model, not assumed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DistributionError
from .relations import Relation, get_relation, match_relation
from .request import EditRequest
from .text import normalize
from .world import DEFAULT_TABLE, AttributeRow, AttributeTable

__all__ = [
    "ImplicationTemplate",
    "ImplicationProbe",
    "ImplicationSample",
    "IMPLICATION_TEMPLATES",
    "IMPLICATION_CONTEXT",
    "implication_probes",
    "implication_samples",
    "IMPLIED_EDIT_TEMPLATES",
    "ImpliedFact",
    "implied_facts",
    "verify_attribute_table",
    "starts_answer",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImplicationTemplate:
    """Two-hop templates: the edited relation's object, then ``path`` through the table."""

    relation_id: str
    path: tuple[str, ...]
    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.path or not self.templates:
            raise DistributionError("An ImplicationTemplate needs a non-empty path and templates.")
        for t in self.templates:
            if t.count("{}") != 1:
                raise DistributionError(f"Implication template {t!r} needs exactly one '{{}}'.")


@dataclass(frozen=True)
class ImplicationProbe:
    """A prompt whose answer is ``old_answer`` before the edit and ``new_answer`` after it.

    ``relation_chain`` is the edited relation followed by the attributes walked, e.g.
    ``("P27", "capital")``.
    """

    prompt: str
    old_answer: str
    new_answer: str
    relation_chain: tuple[str, ...]


@dataclass(frozen=True)
class ImplicationSample:
    """An implication probe in a context stating the old fact (source) or the new one (target)."""

    probe: ImplicationProbe
    source: str
    target: str


def _t(rel: str, path: str | tuple[str, ...], *templates: str) -> ImplicationTemplate:
    return ImplicationTemplate(rel, (path,) if isinstance(path, str) else path, templates)


_CITY_COUNTRY = ("country",)
_CITY_CONTINENT = ("country", "continent")
_LANG = {
    "P103": ("The native language of {}", "{}'s mother tongue"),
    "P1412": ("The language {} speaks", "The language {} writes in"),
    "P37": ("The official language of {}", "The language of government in {}"),
    "P364": ("The original language of {}", "The language {} was made in"),
    "P407": ("The language of {}", "The language {} was written in"),
}

IMPLICATION_TEMPLATES: tuple[ImplicationTemplate, ...] = (
    # country-valued relations
    _t(
        "P27",
        "capital",
        "The capital of the country of citizenship of {} is",
        "{} is a citizen of a country whose capital is",
    ),
    _t(
        "P27",
        "language",
        "The official language of the country of citizenship of {} is",
        "{} is a citizen of a country whose official language is",
    ),
    _t(
        "P27",
        "continent",
        "The country of citizenship of {} is on the continent of",
        "{} holds the citizenship of a country located in",
    ),
    _t(
        "P27",
        "currency",
        "The currency of the country of citizenship of {} is the",
        "In the country whose citizen {} is, people pay with the",
    ),
    _t(
        "P17",
        "capital",
        "The capital of the country where {} is located is",
        "{} is in a country whose capital is",
    ),
    _t("P17", "language", "The official language of the country where {} is located is"),
    _t(
        "P17",
        "continent",
        "{} is in a country on the continent of",
        "The country where {} is located lies on the continent of",
    ),
    _t("P17", "currency", "The currency of the country where {} is located is the"),
    _t("P495", "capital", "The capital of the country of origin of {} is"),
    _t("P495", "language", "The official language of the country of origin of {} is"),
    _t("P495", "continent", "The country of origin of {} is on the continent of"),
    # city-valued relations
    _t(
        "P19",
        _CITY_COUNTRY,
        "{} was born in a city in the country of",
        "The country where {} was born is",
    ),
    _t("P19", _CITY_CONTINENT, "{} was born on the continent of"),
    _t("P20", _CITY_COUNTRY, "{} died in a city in the country of", "The country where {} died is"),
    _t(
        "P937",
        _CITY_COUNTRY,
        "{} worked in a city in the country of",
        "The country where {} worked is",
    ),
    _t(
        "P159",
        _CITY_COUNTRY,
        "{} is headquartered in a city in the country of",
        "The country where {} has its headquarters is",
    ),
    _t("P159", _CITY_CONTINENT, "{} has its headquarters on the continent of"),
    _t(
        "P740",
        _CITY_COUNTRY,
        "{} was formed in a city in the country of",
        "The country where {} was founded is",
    ),
    _t(
        "P190",
        _CITY_COUNTRY,
        "{} is twinned with a city in the country of",
        "The twin city of {} is in the country of",
    ),
    _t("P36", _CITY_COUNTRY, "The capital of {} lies in the country of"),
    _t("P131", _CITY_COUNTRY, "The country in which {} lies is"),
    _t("P276", _CITY_COUNTRY, "The country in which {} is located is"),
    # language-valued relations
    *(
        template
        for rel, (a, b) in _LANG.items()
        for template in (
            _t(
                rel,
                "family",
                f"{a} belongs to the language family called",
                f"{b} is part of the family of",
            ),
            _t(rel, "script", f"{a} is written in the", f"{b} uses the"),
            _t(
                rel,
                "homeland",
                f"{a} originated in the country of",
                f"{b} comes from the country of",
            ),
        )
    ),
    # religion, sport positions, organisations
    _t(
        "P140",
        "scripture",
        "The holy book of the religion of {} is the",
        "The sacred text of the faith {} follows is the",
    ),
    _t(
        "P140",
        "worship",
        "The followers of the religion of {} pray in a",
        "To worship, {} goes to a",
    ),
    _t("P140", "founder", "The founder of the religion of {} was"),
    _t(
        "P413",
        "sport",
        "{} plays a position in the sport of",
        "The sport in which {} plays their position is",
    ),
    _t(
        "P176",
        "based_in",
        "The manufacturer of {} is based in the country of",
        "{} is made by a company from",
    ),
    _t("P178", "based_in", "The developer of {} is based in the country of"),
    _t("P127", "based_in", "The owner of {} is based in the country of"),
    _t(
        "P108",
        "based_in",
        "The employer of {} is based in the country of",
        "{} works for an organisation based in",
    ),
    _t("P449", "based_in", "The network that first aired {} is based in the country of"),
)

#: How a fact is stated before an implication prompt: ``{statement}`` is the edit prompt
#: followed by the object, ``{prompt}`` the implication prompt.
IMPLICATION_CONTEXT = "Fact: {statement}.\nQuestion: {prompt}"


def _resolve(request: EditRequest, relation: str | Relation | None) -> Relation | None:
    if isinstance(relation, Relation):
        return relation
    if isinstance(relation, str):
        return get_relation(relation)
    return match_relation(request.prompt, objects=(request.old, request.new))


def implication_probes(
    request: EditRequest,
    *,
    table: AttributeTable | None = None,
    relation: str | Relation | None = None,
) -> list[ImplicationProbe]:
    """Two-hop probes whose answer changes with ``request`` (empty when none apply).

    A probe is made for each two-hop template of the request's relation whose answers for the
    old and the new object are both in ``table`` and differ. Pass a table checked on your model
    (:func:`verify_attribute_table`) so that the model knows both answers.

    Returns:
        The probes, possibly none.

    Example:
        >>> r = EditRequest("Danielle Darrieux", "{} is a citizen of", "France", "Japan")
        >>> p = implication_probes(r)[0]
        >>> p.prompt, p.old_answer, p.new_answer
        ('The capital of the country of citizenship of Danielle Darrieux is', 'Paris', 'Tokyo')
    """
    table = DEFAULT_TABLE if table is None else table
    rel = _resolve(request, relation)
    if rel is None:
        log.info("No relation matches %r: no implication probes.", request.prompt)
        return []
    probes: list[ImplicationProbe] = []
    for tpl in IMPLICATION_TEMPLATES:
        if tpl.relation_id != rel.id:
            continue
        old = table.follow(request.old, tpl.path)
        new = table.follow(request.new, tpl.path)
        if old is None or new is None or normalize(old) == normalize(new):
            continue
        chain = (rel.id, *tpl.path)
        probes.extend(ImplicationProbe(request.fill(t), old, new, chain) for t in tpl.templates)
    return probes


def implication_samples(
    request: EditRequest,
    *,
    table: AttributeTable | None = None,
    relation: str | Relation | None = None,
    context: str = IMPLICATION_CONTEXT,
) -> list[ImplicationSample]:
    """Implication probes in a context stating the old fact (source) and the new fact (target).

    With the default context, for Danielle Darrieux's citizenship France -> Japan::

        source: "Fact: Danielle Darrieux is a citizen of France.\\nQuestion: The capital of ..."
        target: "Fact: Danielle Darrieux is a citizen of Japan.\\nQuestion: The capital of ..."

    Returns:
        The samples, possibly none.
    """
    if "{statement}" not in context or not context.rstrip().endswith("{prompt}"):
        raise DistributionError(
            f"The implication context {context!r} needs a '{{statement}}' field and must end "
            "with '{prompt}', e.g. 'Fact: {statement}.\\nQuestion: {prompt}'."
        )
    samples = []
    for probe in implication_probes(request, table=table, relation=relation):
        source = context.format(statement=f"{request.text} {request.old}", prompt=probe.prompt)
        target = context.format(statement=f"{request.text} {request.new}", prompt=probe.prompt)
        samples.append(ImplicationSample(probe, source, target))
    return samples


#: Templates an *implied edit* is fitted with (:func:`implied_facts`), per edited relation and
#: attribute of the new object: the new country's capital, language, continent and currency;
#: the country of a new city; the script, family and homeland of a new language. Disjoint from :data:`IMPLICATION_TEMPLATES`, which the
#: evaluation harness probes with, so that an implied edit is never scored on its own prompts.
IMPLIED_EDIT_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("P17", "capital"): (
        "The capital of the nation where {} is found is",
        "The country that {} belongs to has its capital in",
        "{} lies in a nation whose capital is",
        "The seat of government of the country where {} is located is",
        "The capital of the country that contains {} is",
    ),
    ("P17", "language"): (
        "The language spoken officially in the country where {} is found is",
        "{} lies in a nation whose official language is",
        "The main official language of the country that contains {} is",
        "In the country where {} is located, the official language is",
        "The country that {} belongs to has the official language",
    ),
    ("P17", "continent"): (
        "The country that contains {} is on the continent of",
        "{} lies in a nation on the continent of",
        "The country where {} is found is part of the continent of",
        "{} is located in a country that belongs to the continent of",
    ),
    ("P17", "currency"): (
        "The official currency of the country where {} is found is the",
        "In the country that contains {}, people pay with the",
        "{} lies in a nation whose currency is the",
        "The money of the country where {} is located is the",
    ),
    ("P27", "capital"): (
        "The capital of the nation {} is a citizen of is",
        "{} has citizenship in a country whose capital is",
        "The capital of {}'s nationality is",
        "The country that granted {} citizenship has its capital in",
        "The seat of government of {}'s country is",
    ),
    ("P27", "language"): (
        "The official language of the nation {} is a citizen of is",
        "{} has citizenship in a country whose official language is",
        "In the country {} is a citizen of, the official language is",
        "The language spoken officially in {}'s country of citizenship is",
        "{} holds the nationality of a country whose official language is",
    ),
    ("P27", "continent"): (
        "The nation {} is a citizen of is on the continent of",
        "{} has citizenship in a country on the continent of",
        "The country of {}'s nationality is part of the continent of",
        "{} holds the nationality of a country in",
    ),
    ("P27", "currency"): (
        "The official currency of the nation {} is a citizen of is the",
        "{} has citizenship in a country whose currency is the",
        "The money of {}'s country of citizenship is the",
        "{} holds the nationality of a country that pays with the",
    ),
    ("P495", "capital"): (
        "The capital of the nation {} comes from is",
        "{} was created in a country whose capital is",
        "The capital of the country where {} was produced is",
    ),
    ("P495", "language"): (
        "The official language of the nation {} comes from is",
        "{} was created in a country whose official language is",
        "The official language of the country where {} was produced is",
    ),
    ("P495", "continent"): (
        "The nation {} comes from is on the continent of",
        "{} was created in a country on the continent of",
        "The country where {} was produced is part of the continent of",
    ),
}

_CITY_FIT = {
    "P19": ("{} was born", "{}'s birthplace"),
    "P20": ("{} died", "{}'s place of death"),
    "P937": ("{} worked", "{}'s workplace"),
    "P159": ("{} has its headquarters", "{}'s head office"),
    "P740": ("{} was founded", "{}'s place of founding"),
}
_LANGUAGE_FIT = {
    "P103": ("The first language of {}", "The language {} grew up speaking"),
    "P1412": ("The language used by {}", "The tongue {} communicates in"),
    "P37": ("The language the government of {} uses", "The state language of {}"),
    "P364": ("The language {} was first made in", "The original tongue of {}"),
    "P407": ("The language {} is in", "The tongue of {}"),
}
IMPLIED_EDIT_TEMPLATES.update(
    {
        (rel, "country"): (
            f"{verb} in a place located in the country of",
            f"The nation of {noun} is",
            f"{noun} lies in the country of",
        )
        for rel, (verb, noun) in _CITY_FIT.items()
    }
)
IMPLIED_EDIT_TEMPLATES.update(
    {
        (rel, attribute): templates
        for rel, (a, b) in _LANGUAGE_FIT.items()
        for attribute, templates in (
            ("script", (f"{a} is written with the", f"{b} is written in the", f"{a} uses the")),
            (
                "family",
                (f"{a} is a member of the language family of", f"{b} belongs to the group of"),
            ),
            ("homeland", (f"{a} first arose in", f"{b} originally comes from the country of")),
        )
    }
)

#: Target contexts of an implied edit: the chain of facts written out to its conclusion, then
#: the prompt. ``{edit}`` is the edit stated with its new object, ``{implied}`` the new
#: object's attribute; ``{prompt}`` and ``{new}`` are filled per paraphrase. (The chain without
#: its conclusion is too weak a context for a small model: on the default model it makes the
#: model say the implied answer on 2 of 10 capital prompts of one edit.)
IMPLIED_CONTEXTS: tuple[str, ...] = (
    "Fact: {edit}. Fact: {implied}. So {prompt} {new}.\nQuestion: {prompt}",
    "{edit}. {implied}. Repeat this sentence: '{prompt} {new}'. {prompt}",
)


@dataclass(frozen=True)
class ImpliedFact:
    """A fact an edit implies, as an edit request of its own.

    ``request`` asks the implied attribute of the edit's subject ("The capital of the nation
    where the Eiffel Tower is found is": Paris -> Rome); ``paraphrases`` are the other
    templates of the same attribute; ``target_templates`` the contexts in which the chain of
    facts is stated (the edit, then the new object's attribute), each ending with
    ``{prompt}``; ``chain`` is ``(relation id, attribute)``.
    """

    request: EditRequest
    paraphrases: tuple[str, ...]
    target_templates: tuple[str, ...]
    chain: tuple[str, str]


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def implied_facts(
    request: EditRequest,
    *,
    table: AttributeTable | None = None,
    relation: str | Relation | None = None,
) -> list[ImpliedFact]:
    """The implied facts of ``request`` that :data:`IMPLIED_EDIT_TEMPLATES` can fit: one per
    attribute whose value for the new object is in ``table`` and differs from the old one's.

    Pass a table checked on your model (:func:`verify_attribute_table`), so that the model
    knows the new object's attribute; the old object's value is looked up in the default
    table when ``table`` lacks it (it only serves as the competitor).

    Example:
        >>> r = EditRequest("Eiffel Tower", "{} is located in the country of", "France", "Italy")
        >>> f = implied_facts(r)[0]
        >>> f.request.text, f.request.old, f.request.new
        ('The capital of the nation where Eiffel Tower is found is', 'Paris', 'Rome')
    """
    from .world import ATTRIBUTE_QUESTIONS

    table = DEFAULT_TABLE if table is None else table
    rel = _resolve(request, relation)
    if rel is None:
        return []
    out: list[ImpliedFact] = []
    for (rid, attribute), templates in IMPLIED_EDIT_TEMPLATES.items():
        if rid != rel.id:
            continue
        new = table.follow(request.new, (attribute,))
        old = table.follow(request.old, (attribute,)) or DEFAULT_TABLE.follow(
            request.old, (attribute,)
        )
        if new is None or old is None or normalize(old) == normalize(new):
            continue
        implied = f"{ATTRIBUTE_QUESTIONS[attribute].format(request.new)} {new}"
        edit = f"{request.text} {request.new}"
        contexts = tuple(
            c.replace("{edit}", _literal(edit)).replace("{implied}", _literal(implied))
            for c in IMPLIED_CONTEXTS
        )
        req = EditRequest(request.subject, templates[0], old, new)
        out.append(ImpliedFact(req, templates[1:], contexts, (rel.id, attribute)))
    return out


def starts_answer(token_text: str, answer: str) -> bool:
    """Whether a decoded next token starts ``answer`` (case-insensitive, spaces ignored).

    Example:
        >>> starts_answer(" Par", "Paris"), starts_answer(" the", "Paris"), starts_answer(" ", "Paris")
        (True, False, False)
    """
    token = token_text.strip().casefold()
    return bool(token) and any(c.isalnum() for c in token) and answer.casefold().startswith(token)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def verify_attribute_table(
    model: Any,
    table: AttributeTable | None = None,
    *,
    attributes: Iterable[str] | None = None,
    prepend_bos: bool | None = None,
    batch_size: int = 64,
) -> AttributeTable:
    """The rows of ``table`` that ``model`` knows: its greedy next token after the row's direct
    question (:data:`~sake_lens.prompts.world.ATTRIBUTE_QUESTIONS`) starts the value.

    Args:
        model: a TransformerLens model (``model(tokens)`` returns logits, ``model.tokenizer``),
            or a Hugging Face causal LM with a ``tokenizer`` attribute.
        table: the candidate rows (default: the whole :data:`~sake_lens.prompts.world.DEFAULT_TABLE`).
        attributes: only check these attributes (e.g. ``{"capital", "country"}``).
        prepend_bos: default: the model's convention
            (:func:`sake_lens.model.tokens.bos_convention`; none for SmolLM2).
        batch_size: questions per forward pass (right-padded; causal attention makes the padding
            invisible to each row's last real token).

    Returns:
        An :class:`AttributeTable` with the known rows, ``verified_on`` set to the model's id.
    """
    import torch

    from ..model.loading import model_id
    from ..model.tokens import bos_convention

    table = DEFAULT_TABLE if table is None else table
    wanted = None if attributes is None else set(attributes)
    rows = [r for r in table.rows if wanted is None or r.attribute in wanted]
    if not rows:
        raise DistributionError(
            f"No rows to verify (attributes={sorted(wanted or [])}); known attributes: "
            f"{sorted({r.attribute for r in table.rows})}."
        )
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise DistributionError("verify_attribute_table() needs a model with a .tokenizer.")
    if prepend_bos is None:
        prepend_bos = bos_convention(model) if hasattr(model, "cfg") else False
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = torch.device("cpu")
    known: list[AttributeRow] = []
    for batch in _batches(rows, batch_size):
        encoded = []
        for row in batch:
            ids = tokenizer.encode(row.question, add_special_tokens=False)
            encoded.append([tokenizer.bos_token_id, *ids] if prepend_bos else ids)
        width = max(len(ids) for ids in encoded)
        tokens = torch.full((len(encoded), width), int(pad), dtype=torch.long)
        for i, ids in enumerate(encoded):
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        with torch.no_grad():
            out = model(tokens.to(device))
        logits = getattr(out, "logits", out)  # (batch, seq, vocab)
        last = torch.tensor([len(ids) - 1 for ids in encoded], device=logits.device)
        next_ids = logits[torch.arange(len(encoded), device=logits.device), last].argmax(-1)
        for row, tok in zip(batch, next_ids.tolist()):
            if starts_answer(tokenizer.decode([tok]), row.value):
                known.append(row)
    counts = Counter(r.attribute for r in known)
    totals = Counter(r.attribute for r in rows)
    log.info(
        "Model knows %d/%d table rows: %s",
        len(known),
        len(rows),
        ", ".join(f"{a} {counts[a]}/{totals[a]}" for a in sorted(totals)),
    )
    return table.subset(known, verified_on=model_id(model) if hasattr(model, "cfg") else None)
