"""Default out-of-scope prompts for calibrating an edit's gate.

Four kinds, each answering one way a gate can fire wrongly:

* ``subject`` — the edit's template with *other subjects* (the neighbourhood a fact edit must
  not touch; the hardest negatives),
* ``relation`` — the *same subject* with other relations (from the relation template bank),
* ``generic`` — generic text,
* ``neighbour`` — other edits' prompts (a registry passes them: with many edits they are
  natural out-of-scope examples).

Nothing here is tuned to individual records; the lists are built-in and sampled with a seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..prompts.request import EditRequest
from ..prompts.text import normalize

__all__ = [
    "OutOfScope",
    "OTHER_SUBJECTS",
    "GENERIC_PROMPTS",
    "MENTION_TEMPLATES",
    "other_subject_prompts",
    "other_relation_prompts",
    "generic_prompts",
    "default_out_of_scope",
]

#: A mixed list of subjects (people, places, organisations, works, products).
OTHER_SUBJECTS: tuple[str, ...] = (
    "Marie Curie",
    "Albert Einstein",
    "Pablo Picasso",
    "Frida Kahlo",
    "Nelson Mandela",
    "Leonardo da Vinci",
    "Jane Austen",
    "Haruki Murakami",
    "Serena Williams",
    "Lionel Messi",
    "Ludwig van Beethoven",
    "Miles Davis",
    "Ada Lovelace",
    "Gabriel García Márquez",
    "Akira Kurosawa",
    "Cleopatra",
    "Isaac Newton",
    "Wangari Maathai",
    "Rabindranath Tagore",
    "Greta Garbo",
    "Toni Morrison",
    "Diego Maradona",
    "Johann Sebastian Bach",
    "Simone de Beauvoir",
    "Tokyo",
    "Nairobi",
    "Buenos Aires",
    "Reykjavik",
    "Mumbai",
    "Toronto",
    "Istanbul",
    "Lagos",
    "Brazil",
    "Norway",
    "Vietnam",
    "Egypt",
    "New Zealand",
    "Mexico",
    "Poland",
    "Kenya",
    "Toyota",
    "Nokia",
    "Siemens",
    "Samsung",
    "IBM",
    "Nestlé",
    "BBC",
    "Volkswagen",
    "the Golden Gate Bridge",
    "Mount Kilimanjaro",
    "the Amazon River",
    "the Louvre",
    "Harvard University",
    "Real Madrid",
    "The Beatles",
    "ABBA",
    "Windows 95",
    "PlayStation",
    "Don Quixote",
    "The Godfather",
    "the Toyota Corolla",
    "Radiohead",
    "Metallica",
)

#: Generic sentences and sentence starts with no subject in particular.
GENERIC_PROMPTS: tuple[str, ...] = (
    "The weather today is",
    "My favourite food is",
    "Once upon a time, there was",
    "The best way to learn a new language is",
    "In the morning I usually drink",
    "The meeting has been moved to",
    "Please remember to bring your",
    "The recipe calls for two cups of",
    "Scientists have recently discovered that",
    "The train to the airport leaves at",
    "Here is a list of things to do this weekend:",
    "The most important thing about friendship is",
    "I think the answer to the question is",
    "When the sun sets, the sky turns",
    "The capital letters in this sentence are",
    "A good night's sleep helps you",
    "The price of the tickets was",
    "She opened the door and saw",
    "To install the software, first",
    "The children played in the",
    "Water boils at a temperature of",
    "The book I am reading is about",
    "Our team won the match because",
    "The store closes every day at",
    "He picked up the phone and said",
    "The museum is open from",
    "My neighbour has a dog named",
    "The river flows through the valley towards",
    "After lunch, we went to",
    "The instructions say that you should",
    "A triangle has three",
    "The company announced its quarterly results on",
    "The garden is full of",
    "In my opinion, the film was",
    "The doctor recommended that I",
    "Tomorrow we are going to",
    "The password must contain at least",
    "The first rule of cooking is",
    "The bus was late because of",
    "Thank you for your message; I will",
)

#: Sentences that name a subject without asking any of its facts ("Tell me about {}"): the
#: fact-keyed gate (:mod:`sake_lens.gate.fact`) calibrates against them, so that a prompt
#: which merely mentions the edited subject does not fire the edit.
MENTION_TEMPLATES: tuple[str, ...] = (
    "I read an article about {} yesterday",
    "Tell me something about {}",
    "Have you ever heard of {}?",
    "{} was in the news again this week",
    "My friend keeps talking about {}",
    "There is a new book about {}",
    "A lot of people have opinions about {}",
    "Let me tell you a story about {}",
    "The first time I heard of {} was",
    "Could you summarise {} in one line?",
    "A photo of {} hangs on my wall",
    "{} is a topic that comes up often",
    "What do you think of {}?",
    "Here are some facts about {}:",
    "A quiz question about {}:",
    "The museum has an exhibition on {}",
    "Few people know much about {}",
    "{} has a long and interesting history",
    "I would like to learn more about {}",
    "{} is something I know little about",
    "A podcast episode about {} starts with",
    "The encyclopedia entry on {} begins",
    "Some say {} is overrated",
    "{} is often mentioned in the same breath as",
    "{}, as most people know,",
    "Speaking of {},",
    "The story of {} begins",
    "An interesting fact about {} is that",
)

#: One default in-subject sentence when a template is unknown to the relation bank.
_FALLBACK_RELATION_TEMPLATES: tuple[str, ...] = (
    "{} was born in the year",
    "The first thing people notice about {} is",
    "The colour most associated with {} is",
    "A famous quote about {} is",
    "{} is often compared to",
    "Last year, {} was in the news because",
)


@dataclass(frozen=True)
class OutOfScope:
    """Out-of-scope prompts and the kind of each (``subject``, ``relation``, ...)."""

    prompts: tuple[str, ...]
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.kinds):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.kinds)} kinds.")

    def __len__(self) -> int:
        return len(self.prompts)

    def __add__(self, other: OutOfScope) -> OutOfScope:
        return OutOfScope(self.prompts + other.prompts, self.kinds + other.kinds)

    @classmethod
    def of(cls, prompts: Sequence[str], kind: str) -> OutOfScope:
        return cls(tuple(prompts), (kind,) * len(prompts))


def _rng(request: EditRequest, seed: int, salt: str) -> random.Random:
    return random.Random(f"{seed}|{salt}|{request.subject}|{request.prompt}")


def other_subject_prompts(request: EditRequest, n: int = 24, seed: int = 0) -> list[str]:
    """The edit's template filled with ``n`` other subjects from :data:`OTHER_SUBJECTS`.

    Returns:
        The prompts.
    """
    own = normalize(request.subject)
    pool = [s for s in OTHER_SUBJECTS if own not in normalize(s) and normalize(s) not in own]
    chosen = _rng(request, seed, "subject").sample(pool, min(n, len(pool)))
    return [request.prompt.replace("{}", s, 1) for s in chosen]


def other_relation_prompts(request: EditRequest, n: int = 12, seed: int = 0) -> list[str]:
    """The edit's subject in ``n`` other relations' paraphrases (relation template bank).

    Returns:
        The prompts (fewer when the bank has fewer relations).
    """
    from ..prompts.relations import RELATIONS, match_relation

    own = match_relation(request.prompt, objects=[request.old])
    rng = _rng(request, seed, "relation")
    templates = [
        rng.choice(rel.paraphrases)
        for rid, rel in sorted(RELATIONS.items())
        if (own is None or rid != own.id) and rel.paraphrases
    ] or list(_FALLBACK_RELATION_TEMPLATES)
    chosen = rng.sample(templates, min(n, len(templates)))
    return [t.replace("{}", request.subject, 1) for t in chosen]


def generic_prompts(n: int = 24, seed: int = 0) -> list[str]:
    """``n`` generic prompts from :data:`GENERIC_PROMPTS`.

    Returns:
        The prompts.
    """
    return random.Random(f"{seed}|generic").sample(GENERIC_PROMPTS, min(n, len(GENERIC_PROMPTS)))


def default_out_of_scope(
    request: EditRequest,
    *,
    n_subjects: int = 24,
    n_relations: int = 12,
    n_generic: int = 24,
    neighbours: Sequence[str] = (),
    seed: int = 0,
) -> OutOfScope:
    """Out-of-scope prompts for an edit: other subjects, other relations, generic, neighbours.

    Returns:
        The out-of-scope prompts, by kind.

    Example:
        >>> req = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
        >>> oos = default_out_of_scope(req, n_subjects=2, n_relations=1, n_generic=1)
        >>> oos.kinds
        ('subject', 'subject', 'relation', 'generic')
    """
    own = {normalize(request.text)}
    neigh = [p for p in dict.fromkeys(neighbours) if normalize(p) not in own]
    return (
        OutOfScope.of(other_subject_prompts(request, n_subjects, seed), "subject")
        + OutOfScope.of(other_relation_prompts(request, n_relations, seed), "relation")
        + OutOfScope.of(generic_prompts(n_generic, seed), "generic")
        + OutOfScope.of(neigh, "neighbour")
    )
