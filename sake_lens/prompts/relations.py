"""The relation template bank: paraphrases and CounterFact templates for ~30 Wikidata relations.

Each :class:`Relation` has

* ``paraphrases`` — natural templates written for sake_lens (``{}`` is the subject), each ending
  where the object comes next. They are deliberately *different* from CounterFact's own prompt
  templates (a test checks this), so that generalisation measured on CounterFact's rephrase
  prompts is not measured on prompts the edit was fitted on.
* ``counterfact_templates`` — CounterFact's prompt templates that belong to the relation (from
  the ParaRel patterns CounterFact was built with), used by :func:`match_relation` to find the
  relation of an edit request.
* ``cues`` — regular expressions for templates not in the table (other CounterFact splits, user
  prompts); tried after the exact look-up.
* ``typical_objects`` — a few objects of the relation's type, used only to choose between the
  relations of a template that CounterFact shares across relations ("{}, the" is used for
  instruments, sports and playing positions).

Everything here is per relation: nothing is tuned to individual records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import DistributionError
from .text import normalize, normalize_template, split_noisy_prefix, template_of
from .world import CONTINENTS, COUNTRY_NAMES

__all__ = [
    "Relation",
    "RELATIONS",
    "IMPLIED",
    "get_relation",
    "match_relation",
    "relation_candidates",
    "independent_relations",
]


@dataclass(frozen=True)
class Relation:
    """One Wikidata relation with its templates (see the module docstring)."""

    id: str
    name: str
    object_kind: str
    paraphrases: tuple[str, ...]
    counterfact_templates: tuple[str, ...]
    cues: tuple[str, ...] = ()
    typical_objects: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"P\d+", self.id):
            raise DistributionError(f"Relation id {self.id!r} must be a Wikidata id like 'P27'.")
        for kind, templates in (
            ("paraphrase", self.paraphrases),
            ("CounterFact", self.counterfact_templates),
        ):
            for t in templates:
                if t.count("{}") != 1:
                    raise DistributionError(
                        f"{self.id} {kind} template {t!r} must contain exactly one '{{}}' for "
                        "the subject."
                    )
        if len(set(map(normalize_template, self.paraphrases))) != len(self.paraphrases):
            raise DistributionError(f"{self.id} has duplicate paraphrase templates.")
        object.__setattr__(
            self, "typical_objects", frozenset(normalize(o) for o in self.typical_objects)
        )

    def fill(self, subject: str) -> list[str]:
        """The paraphrases with ``subject`` filled in."""
        return [t.replace("{}", subject, 1) for t in self.paraphrases]


_INSTRUMENTS = frozenset(
    "piano guitar violin trumpet cello saxophone drums organ bass flute clarinet harp "
    "harpsichord banjo mandolin accordion trombone viola harmonica keyboard keyboards "
    "synthesizer percussion ukulele oboe bassoon tuba sitar".split()
)
_SPORTS = frozenset(
    "soccer football basketball baseball hockey cricket rugby tennis golf volleyball handball "
    "boxing cycling athletics swimming wrestling".split()
)
_POSITIONS = frozenset(
    "midfielder goalkeeper goaltender defender forward striker winger quarterback linebacker "
    "cornerback safety pitcher catcher outfielder infielder shortstop centre center guard "
    "fullback halfback defenceman defenseman".split()
)
_GENRES = frozenset(
    "jazz opera rock pop blues funk soul rap country folk reggae punk metal disco techno trance "
    "house classical gospel fantasy thriller sitcom drama comedy horror tragedy musical romance "
    "portrait electro ballet".split()
)
_LOC = r"(located|situated|found|lies|is in\b|within)"


def _r(
    id: str,
    name: str,
    kind: str,
    paraphrases: Sequence[str],
    counterfact: Sequence[str],
    cues: Sequence[str] = (),
    typical: frozenset[str] | Sequence[str] = frozenset(),
) -> Relation:
    return Relation(
        id, name, kind, tuple(paraphrases), tuple(counterfact), tuple(cues), frozenset(typical)
    )


_RELATIONS: tuple[Relation, ...] = (
    _r(
        "P103",
        "native language",
        "language",
        (
            "{}'s first language is",
            "The first language {} learned as a child was",
            "{} grew up speaking",
            "The language {} spoke at home as a child was",
            "As a child, {} spoke",
            "{} was raised speaking",
            "The language {} learned from birth is",
            "{}'s native tongue is",
            "From birth, {} spoke",
            "The mother language of {} is",
            "The language {} grew up with is",
            "In childhood, {} spoke",
            "{}'s home language growing up was",
            "The earliest language {} spoke was",
            "By birth, {} is a speaker of",
            "{} learned to talk in",
            "The language of {}'s upbringing is",
        ),
        (
            "The mother tongue of {} is",
            "The native language of {} is",
            "{} is a native speaker of",
            "{} spoke the language",
            "{}, a native",
            "{}, speaker of",
        ),
        cues=(
            r"mother tongue|native (language|speaker|tongue)|first language|, a native$|, speaker of|\bspoke\b",
        ),
    ),
    _r(
        "P1412",
        "languages spoken or written",
        "language",
        (
            "{} is fluent in",
            "The language {} speaks and writes is",
            "{} communicates in",
            "{} expresses themselves in",
            "The language in which {} writes is",
            "{} is able to speak",
            "{} converses in",
            "{} usually talks in",
            "Most of {}'s writing is in",
            "{} gave interviews in",
            "When speaking in public, {} uses",
            "The working language of {} is",
            "{} has a good command of",
            "The language {} is most comfortable in is",
            "{} prefers to speak",
            "{} published their work in",
            "A language spoken by {} is",
        ),
        (
            "{} speaks",
            "{} speaks the language",
            "{} writes in",
            "The language used by {} is",
        ),
        cues=(r"\b(speaks|writes in|communicat\w*|fluent)\b|language used by",),
    ),
    _r(
        "P364",
        "original language of film or TV show",
        "language",
        (
            "{} was originally made in",
            "The original version of {} is in",
            "The dialogue of {} is in",
            "{} was produced in the language",
            "The characters in {} speak",
            "The script of {} was written in",
            "The original audio of {} is in",
            "The language in which {} was created is",
            "The dialogue and songs of {} are in",
            "If you watch {} in its original form, you hear",
            "{} is originally in",
            "Originally, {} was in",
            "The source language of {} is",
            "The language of the original {} is",
            "{} was first shown in the language",
            "The original soundtrack of {} is sung and spoken in",
        ),
        (
            "The language of {} is",
            "The language of {} was",
            "The original language of {} is",
            "The original language of {} was",
        ),
        cues=(r"original language|^the language of \{\}",),
    ),
    _r(
        "P407",
        "language of work",
        "language",
        (
            "{} was originally written in",
            "The text of {} is in",
            "{} is composed in",
            "The language in which {} is written is",
            "{} was composed in the language",
            "The original text of {} is in",
            "The author wrote {} in",
            "{} was published in the language",
            "The words of {} are in",
            "{} is a work written in",
            "{} appeared first in",
            "The language of the original text of {} is",
            "Originally, {} was published in",
            "{} was penned in",
            "The manuscript of {} is in",
            "The original edition of {} is in",
        ),
        ("{} was written in", "{} is written in"),
        cues=(r"\bwritten in$|\bpenned in$",),
    ),
    _r(
        "P37",
        "official language",
        "language",
        (
            "The official language in {} is",
            "The government of {} conducts its business in",
            "People in {} officially speak",
            "Official documents in {} are written in",
            "The language recognised by law in {} is",
            "The state language of {} is",
            "In {}, the official language is",
            "Schools in {} teach mainly in",
            "The main language of {} is",
            "Most people in {} speak",
            "The national language of {} is",
            "In {}, most signs are written in",
            "The language of government in {} is",
            "Residents of {} mostly speak",
            "{} has as its official language",
            "The primary language spoken in {} is",
            "In {}, people commonly speak",
        ),
        (
            "The official language of {} is",
            "In {}, an official language is",
            "The law in {} declares the language",
            "In {}, the language spoken is",
            "In {}, they understand",
        ),
        cues=(r"official language|^in \{\},.*(language|understand|speak)|declares the language",),
    ),
    _r(
        "P27",
        "country of citizenship",
        "country",
        (
            "{} is a national of",
            "{} holds the nationality of",
            "The nationality of {} is",
            "{} has citizenship in",
            "The country of citizenship of {} is",
            "{} carries a passport from",
            "{} is legally a citizen of",
            "The country that {} is a citizen of is",
            "{}'s nationality is",
            "By nationality, {} is from",
            "{} was granted citizenship by",
            "The passport {} holds was issued by",
            "Legally, {} belongs to the country of",
            "The state of which {} is a citizen is",
            "{} has the citizenship of",
            "{} is officially a citizen of",
        ),
        (
            "{} is a citizen of",
            "{}, a citizen of",
            "{}, who is a citizen of",
            "{} holds a citizenship from",
            "{}, who holds a citizenship from",
            "{} has a citizenship from",
            "{}, who has a citizenship from",
        ),
        cues=(r"citizen|nationality|passport",),
    ),
    _r(
        "P19",
        "place of birth",
        "city",
        (
            "{} was born in the city of",
            "The birthplace of {} is",
            "{}'s place of birth is",
            "{} came into the world in",
            "The city where {} was born is",
            "{} is a native of",
            "{} first saw the light of day in",
            "{}'s hometown is",
            "The place {} was born is",
            "{}'s birth took place in",
            "{} entered the world in",
            "{}'s life began in",
            "{} hails from the city of",
            "According to records, {} was born in",
            "The location of {}'s birth is",
            "{} was born and grew up in",
        ),
        (
            "{} was born in",
            "{} is originally from",
            "{} was originally from",
            "{} is native to",
            "{} was native to",
            "{} originates from",
            "{} originated from",
        ),
        cues=(r"\bborn\b|birth|originally from|native to|originat\w+ from",),
    ),
    _r(
        "P20",
        "place of death",
        "city",
        (
            "{} died in the town of",
            "The place of death of {} is",
            "{}'s place of death was",
            "The city where {} died is",
            "{} spent their final days in",
            "{} breathed their last in",
            "{} drew their last breath in",
            "The death of {} took place in",
            "{} died while living in",
            "{} ended their days in",
            "The city in which {} passed away is",
            "{}'s death occurred in",
            "{} spent the last years of their life in",
            "{} departed this life in",
            "The location of {}'s death is",
            "{} passed on in",
            "According to records, {} died in",
        ),
        (
            "{} died in",
            "{} passed away in",
            "{} died at",
            "{} passed away at",
            "{} expired at",
            "{} lost their life at",
            "{} succumbed at",
            "{}'s life ended in",
            "{} died in the city of",
        ),
        cues=(r"\bdied\b|passed away|death|expired|succumbed|life ended|lost their life",),
    ),
    _r(
        "P937",
        "work location",
        "city",
        (
            "{} worked for many years in",
            "The city where {} worked is",
            "{}'s place of work was",
            "{} had a job in",
            "{} was professionally active in",
            "{}'s workplace was located in",
            "{} spent their working life in",
            "The work location of {} is",
            "{} pursued a career in the city of",
            "{} practised their profession in",
            "{} did most of their work in",
            "{} was based professionally in",
            "{}'s career unfolded in",
            "{} held a position in the city of",
            "The place where {} worked was",
            "For work, {} lived in",
            "{} earned a living in",
        ),
        (
            "{} worked in",
            "{} worked in the city of",
            "{} was employed in",
            "{} found employment in",
            "{} took up work in",
            "{} used to work in",
        ),
        cues=(r"work(ed)? in|employed in|employment in|took up work",),
    ),
    _r(
        "P740",
        "location of formation",
        "city",
        (
            "{} was established in",
            "{} was set up in",
            "{} got its start in",
            "The place where {} was founded is",
            "{} came together in",
            "{} was formed in the city of",
            "The founding location of {} is",
            "{} has its origins in the city of",
            "{} first formed in",
            "{} was launched in",
            "{} began in",
            "{} traces its roots to",
            "The city where {} was formed is",
            "{} was created in the city of",
            "{} started out in",
            "{} first came together in",
        ),
        (
            "{} was founded in",
            "{} that was founded in",
            "{}, founded in",
            "{} formed in",
            "{} was formed in",
            "{}, that was formed in",
            "{} was started in",
            "{}, that was started in",
            "{} started in",
        ),
        cues=(r"founded|formed in|started in|established",),
    ),
    _r(
        "P159",
        "headquarters location",
        "city",
        (
            "{}'s head office is in",
            "The head office of {} is located in",
            "{} has its headquarters in",
            "The main office of {} is in",
            "{} is headquartered in the city of",
            "The headquarters of {} are located in",
            "{} runs its operations from",
            "{} keeps its main offices in",
            "The corporate headquarters of {} is in",
            "{}'s central office is in",
            "{} is run from its headquarters in",
            "The seat of {} is in",
            "{} operates out of",
            "{}'s main base is in",
            "The HQ of {} is in",
            "{} has its main office in",
        ),
        (
            "{} is headquartered in",
            "{}'s headquarters are in",
            "The headquarter of {} is located in",
            "The headquarter of {} is in",
            "The headquarters of {} is in",
            "{}, whose headquarters are in",
            "{} is based in",
        ),
        cues=(r"headquarter|head office|based in",),
    ),
    _r(
        "P108",
        "employer",
        "organisation",
        (
            "{} works at",
            "{} is an employee of",
            "The employer of {} is",
            "{}'s employer is",
            "{} is on the staff of",
            "{} was hired by",
            "{} draws a salary from",
            "{} is employed at",
            "The company {} works for is",
            "{} has a job at",
            "{} is a staff member at",
            "{} earns a living working for",
            "{} has worked for",
            "The organisation that employs {} is",
            "{} reports to work at",
            "{} is part of the team at",
            "{} joined the staff of",
        ),
        (
            "{} is employed by",
            "{}, who is employed by",
            "{} works for",
            "{}, who works for",
            "{}, of",
        ),
        cues=(r"employ|works? for|staff|^\{\}, of$",),
    ),
    _r(
        "P106",
        "occupation",
        "profession",
        (
            "{}'s job is",
            "The job of {} is",
            "{}'s line of work is",
            "The occupation held by {} is",
            "{}'s trade is",
            "The profession practised by {} is",
            "{}'s chosen profession is",
            "{}'s main occupation is",
            "{}'s professional role is",
            "The vocation of {} is",
            "{}'s vocation is",
            "{}'s day job is",
            "The main profession of {} is",
            "{}'s professional occupation is",
            "{} makes a living in the profession of",
            "{} is active in the profession of",
        ),
        (
            "{}'s occupation is",
            "The occupation of {} is",
            "The profession of {} is",
            "{}'s profession is a",
            "{}'s profession is an",
            "{} works as",
            "{}, who works as",
        ),
        cues=(r"occupation|profession (is|of)|profession is an?|works as|\bjob\b|vocation",),
    ),
    _r(
        "P39",
        "position held",
        "office",
        (
            "{} holds the office of",
            "The office held by {} is that of",
            "{} was elected to the office of",
            "{}'s official title is",
            "{}'s title is",
            "The position held by {} is",
            "{} occupies the office of",
            "{} served in the role of",
            "{} has held the title of",
            "{}'s rank is",
            "The role of {} is that of",
            "{} was named to the post of",
            "{} holds the rank of",
            "{} took office as",
            "{} was installed as",
            "{} serves as",
        ),
        (
            "{}, who holds the position of",
            "{} holds the title of",
            "{} has the position of",
            "{}, who has the position of",
            "{} is a",
            "{} holds the position of",
            "{}'s position is",
            "{}, whose position is that of",
        ),
        cues=(r"^(?!.*\bplay).*(position (is|of)|title of|office of)",),
    ),
    _r(
        "P101",
        "field of work",
        "field",
        (
            "{}'s field is",
            "{}'s field of work is",
            "The field {} works in is",
            "{} is an expert in",
            "{}'s research area is",
            "{} specialises in the field of",
            "{} made contributions to the field of",
            "{} is known for work in",
            "The discipline of {} is",
            "{}'s area of expertise is",
            "{} devoted their career to",
            "The subject {} studies is",
            "{}'s academic field is",
            "{} is a scholar of",
            "{}'s main discipline is",
            "{} is best known for contributions to",
            "The area of study of {} is",
        ),
        (
            "{} works in the field of",
            "{}'s expertise is",
            "{}'s area of work is",
            "The expertise of {} is",
            "{}'s domain of work is",
            "The domain of work of {} is",
            "{}'s domain of activity is",
            "The domain of activity of {} is",
            "{} specializes in",
            "{} works in the area of",
        ),
        cues=(r"field of|expertise|area of work|domain of|speciali[sz]es|area of",),
    ),
    _r(
        "P136",
        "genre",
        "genre",
        (
            "The musical genre of {} is",
            "{}'s genre is",
            "{} is known for the genre",
            "{} is associated with the genre of",
            "The style of {} is",
            "{} specialises in the genre of",
            "The genre of {} is",
            "{} works in the genre of",
            "{} belongs to the genre of",
            "{} is a performer of",
            "{}'s work falls under the genre of",
            "{} is classified under the genre",
            "The artistic style associated with {} is",
            "{} is famous for playing",
            "{} is best known for performing",
            "The genre most associated with {} is",
            "{}'s music is",
        ),
        (
            "The genre played by {} is",
            "{} performs",
            "What does {} play? They play",
            "{} is known for performing",
            "{}, who plays",
            "{} plays",
        ),
        cues=(r"genre|performs$|known for performing|what does \{\} play|, who plays$|plays$",),
        typical=_GENRES,
    ),
    _r(
        "P1303",
        "instrument",
        "instrument",
        (
            "{} is a player of the",
            "The instrument {} plays is the",
            "{}'s instrument is the",
            "{} is known for playing the",
            "{} is a virtuoso on the",
            "{} performs music on the",
            "{}'s main instrument is the",
            "{} made a name playing the",
            "{} learned to play the",
            "{} is best known as a player of the",
            "On stage, {} plays the",
            "The instrument associated with {} is the",
            "{} records music on the",
            "{} mastered the",
            "{} is a performer on the",
            "The instrument that {} plays is the",
            "{} is famous for playing the",
        ),
        (
            "{} plays the instrument",
            "{} performs on the",
            "{}, performing on the",
            "{}, playing the",
            "{} plays the",
        ),
        cues=(r"instrument|performs? on the|performing on the|playing the$|plays the$",),
        typical=_INSTRUMENTS,
    ),
    _r(
        "P641",
        "sport",
        "sport",
        (
            "{} plays the sport of",
            "The sport {} plays is",
            "{}'s sport is",
            "{} competes in",
            "{} is a professional player of",
            "{} made a career in",
            "The sport that {} plays professionally is",
            "{} is an athlete in",
            "{} earns a living playing",
            "{} is known for playing",
            "{}'s professional sport is",
            "{} is a star of",
            "{} trained for a career in",
            "The game {} plays is",
            "{} plays professional",
            "{} competes professionally in",
            "{}'s athletic career is in",
        ),
        (
            "{} professionally plays the sport",
            "{} is a professional",
            "What sport does {} play? They play",
        ),
        cues=(r"\bsport\b|is a professional$",),
        typical=_SPORTS,
    ),
    _r(
        "P413",
        "position played on team",
        "position",
        (
            "{} plays at the position of",
            "{}'s position on the field is",
            "The position {} plays is",
            "{}'s playing position is",
            "On the team, {}'s role is",
            "{} plays in the role of",
            "The position played by {} is",
            "{}'s usual position is",
            "{}'s role on the team is",
            "{} is listed at the position of",
            "{} was drafted as",
            "{} usually lines up at",
            "{}'s field position is",
            "{} is a player in the position of",
            "In the lineup, {} plays",
            "{} specialises in the position of",
            "{} made a career at the position of",
        ),
        (
            "{} plays in the position of",
            "{} plays as",
            "{}, who plays the position",
            "Which position does {} play? They play as",
            "{}, the",
        ),
        cues=(r"plays?\b.*position|position does|plays as|^\{\}, the$",),
        typical=_POSITIONS,
    ),
    _r(
        "P190",
        "twinned city",
        "city",
        (
            "{} is twinned with",
            "The sister city of {} is",
            "{}'s sister city is",
            "{} has a twinning agreement with",
            "{} has a sister-city partnership with",
            "{}'s twin town is",
            "The partner city of {} is",
            "{}'s partner city is",
            "{} shares a town-twinning link with",
            "One of the sister cities of {} is",
            "{} is officially paired with the city of",
            "{} maintains a sister-city relationship with",
            "A city twinned with {} is",
            "The twin town of {} is",
            "{} signed a twinning agreement with",
            "{} is a sister city of",
        ),
        (
            "The twin city of {} is",
            "What is the twin city of {}? It is",
            "{} is a twin city of",
        ),
        cues=(r"twin|sister cit|partner city",),
    ),
    _r(
        "P36",
        "capital",
        "city",
        (
            "The capital of {} is the city of",
            "{}'s seat of government is",
            "The seat of government of {} is",
            "The main city and capital of {} is",
            "{} is governed from",
            "{} has its capital in",
            "{}'s capital is the city of",
            "The administrative capital of {} is",
            "The government of {} sits in",
            "The city that serves as the capital of {} is",
            "{} has as its capital",
            "The political centre of {} is",
            "The parliament of {} meets in",
            "{} is administered from",
            "{}'s administrative centre is",
            "The chief city and capital of {} is",
            "The official capital of {} is",
        ),
        (
            "The capital of {} is",
            "The capital city of {} is",
            "{}'s capital is",
            "{}'s capital city is",
            "{}'s capital,",
            "{}'s capital city,",
            "{}, which has the capital",
            "{}, which has the capital city",
        ),
        cues=(r"capital",),
    ),
    _r(
        "P30",
        "continent",
        "continent",
        (
            "{} is on the continent of",
            "The continent where {} is found is",
            "{} lies on the continent of",
            "{} is situated on the continent of",
            "{} is part of the continent of",
            "The continent of {} is",
            "{}'s continent is",
            "Geographically, {} belongs to",
            "{} can be found on the continent of",
            "The continent that contains {} is",
            "{} is located on the continent of",
            "On a map, {} is in",
            "The landmass {} belongs to is",
            "In terms of continents, {} is in",
            "{} is geographically part of",
            "{} sits on the continent of",
        ),
        (
            "{} is located in the continent",
            "{} belongs to the continent of",
            "{} is a part of the continent of",
        ),
        cues=(r"continent",),
        typical=CONTINENTS,
    ),
    _r(
        "P17",
        "country",
        "country",
        (
            "{} is in the country of",
            "The country where {} is located is",
            "{} is situated in the country of",
            "{} lies within the borders of",
            "The country in which {} is found is",
            "{} can be found in the country of",
            "{} is part of the country of",
            "{}'s country is",
            "The nation where {} is located is",
            "{} belongs to the country of",
            "Geographically, {} is in the country of",
            "The country that contains {} is",
            "{} is a place in the country of",
            "The state in which {} lies is",
            "To visit {}, you have to travel to",
            "{} is found within the country of",
        ),
        (
            "{} is located in the country of",
            "{}, located in",
            "{}, which is located in",
        ),
        cues=(r"(located|situated|lies|found) in the country of$",),
        typical=COUNTRY_NAMES,
    ),
    _r(
        "P276",
        "location",
        "place",
        (
            "{} took place in",
            "The site of {} is",
            "The place associated with {} is",
            "{} is sited in",
            "The setting of {} is",
            "{} was located in",
            "The venue of {} was",
            "The place of {} is",
            "{} is to be found in",
            "The locality of {} is",
            "The site where {} is found is",
            "{} occurred in",
            "You would find {} in",
            "Geographically, {} is associated with",
            "The location associated with {} is",
            "The scene of {} was",
        ),
        ("The location of {} is", "Where is {}? It is located in"),
        cues=(r"location of|where is",),
    ),
    _r(
        "P131",
        "located in the administrative territorial entity",
        "place",
        (
            "{} is situated in",
            "{} lies in",
            "You can find {} in",
            "The region where {} is located is",
            "{} is found in",
            "{} sits in",
            "The administrative region of {} is",
            "{} forms part of",
            "{} lies within",
            "The area that contains {} is",
            "Geographically, {} is in",
            "{} is a place located in",
            "{} lies inside",
            "The place where {} is located is",
            "{} is positioned in",
            "On the map, {} is in",
            "The territory that includes {} is",
        ),
        (
            "{} is located in",
            "{}, in",
            "{} is in",
            "{} can be found in",
            "{} is within",
        ),
        cues=(_LOC + r"( in)?$", r"^\{\}, in$"),
    ),
    _r(
        "P449",
        "original broadcaster",
        "network",
        (
            "{} originally aired on",
            "{} was first broadcast on",
            "The network that first aired {} is",
            "{} was broadcast on",
            "{} aired on the network",
            "{} premiered on the network",
            "The original network of {} is",
            "{} first appeared on",
            "The channel that broadcast {} was",
            "{} was shown on",
            "{} was carried by the network",
            "{} ran on",
            "Viewers could watch {} on",
            "{} made its debut on",
            "The broadcaster of {} was",
            "{} was televised on",
            "{} was picked up by",
        ),
        (
            "{} was released on",
            "{} is to debut on",
            "{} was originally aired on",
            "{} debuted on",
            "{} premieres on",
            "{} premiered on",
        ),
        cues=(r"aired|debut|premier|broadcast|released on",),
    ),
    _r(
        "P463",
        "member of",
        "organisation",
        (
            "{} is a member organisation of",
            "{} belongs to",
            "{} is part of the organisation",
            "{} holds membership in",
            "{} has membership in",
            "{} is affiliated to",
            "{} joined",
            "The organisation {} belongs to is",
            "{} is one of the members of",
            "{} is registered as a member of",
            "The body that {} is a member of is",
            "{} participates as a member in",
            "{} is an affiliate of",
            "{} became a member of",
            "{} is a full member of",
            "{} is among the members of",
        ),
        (
            "{} is affiliated with",
            "{} is affiliated with the",
            "{} belongs to the organization of",
            "{} is a member of",
            "{} is a part of the",
        ),
        cues=(r"member|affiliated with(?! the religion)|organi[sz]ation of",),
    ),
    _r(
        "P138",
        "named after",
        "name",
        (
            "{} takes its name from",
            "{} was named in honour of",
            "{} gets its name from",
            "The name of {} comes from",
            "{} is named in honour of",
            "{} bears the name of",
            "{} owes its name to",
            "The namesake of {} is",
            "{} derives its name from",
            "{}'s name honours",
            "{} was given its name after",
            "{}'s name is taken from",
            "{} has its name from",
            "{} was christened after",
            "The name of {} was inspired by",
            "{} was so named after",
        ),
        (
            "{} is named after",
            "{} is named for",
            "{} is called after",
            "{}, named after",
            "{}, named for",
            "{}, called after",
            "{} was named for",
            "{} was called after",
            "{}, which is named for",
            "{}, which is named after",
            "{}, which was named for",
            "{}, which was named after",
            "{}, which is called after",
            "{}, which was called after",
        ),
        cues=(r"named (after|for)|called after|\bname",),
    ),
    _r(
        "P140",
        "religion",
        "religion",
        (
            "{} practises the religion of",
            "{}'s religion is",
            "The religion of {} is",
            "{} is an adherent of",
            "{}'s faith is",
            "The faith of {} is",
            "{} is a follower of the religion",
            "{} worships according to",
            "{} was raised in the faith of",
            "{} adheres to",
            "{} belongs to the religion of",
            "{}'s religious affiliation is",
            "The religious tradition of {} is",
            "{} professes",
            "{} is a believer in",
            "{} observes the religion of",
            "{}'s faith tradition is",
        ),
        (
            "The official religion of {} is",
            "{} follows the religion of",
            "{} is affiliated with the religion",
            "{} is follower of",
        ),
        cues=(r"religio|faith|follower of|worship",),
    ),
    _r(
        "P264",
        "record label",
        "label",
        (
            "{} is signed to",
            "{}'s record label is",
            "The record label of {} is",
            "{} records for the label",
            "{} released records on",
            "{} is on the label",
            "The label that releases {}'s music is",
            "{} put out albums on",
            "{} signed a record deal with",
            "{}'s music is released by",
            "{} has a recording contract with",
            "The record company of {} is",
            "{} released their albums through",
            "{} is a recording artist for",
            "{} issued records on the label",
            "The label {} records for is",
        ),
        (
            "{}'s music label is",
            "{} recorded for",
            "{} is represented by",
            "The music label that is representing {} is",
            "{} label :",
            "{}'s label is",
            "{}, which is represented by",
        ),
        cues=(r"label|recorded for|represent",),
    ),
    _r(
        "P176",
        "manufacturer",
        "company",
        (
            "{} is manufactured by",
            "{} is made by",
            "The manufacturer of {} is",
            "{} is built by",
            "The company that makes {} is",
            "{} was manufactured by",
            "{} comes from the manufacturer",
            "{} is a product made by",
            "{} is assembled by",
            "{}'s maker is",
            "The maker of {} is",
            "{} is produced by the company",
            "{} was built by",
            "{} carries the brand of",
            "{} was designed and built by",
            "The company behind {} is",
            "{} is a model from",
        ),
        (
            "{} is a product of",
            "{}, produced by",
            "{} is produced by",
            "{}, created by",
            "{} is created by",
            "{}, developed by",
            "{} is developed by",
        ),
        cues=(r"produc|manufactur|made by|built by|is (created|developed) by",),
    ),
    _r(
        "P178",
        "developer",
        "company",
        (
            "{} was developed by the company",
            "The developer of {} is",
            "{}'s developer is",
            "{} is a product developed by",
            "The company that developed {} is",
            "{} was designed by",
            "{} was engineered by",
            "{} was created by the company",
            "{} is maintained by",
            "{} comes from the developer",
            "{} was released by",
            "{} was brought to market by",
            "The company responsible for developing {} is",
            "{} originated as a project of",
            "The team behind {} works for",
            "{} was built by the developers at",
        ),
        (
            "{}, a product developed by",
            "{}, a product created by",
            "{}, a product of",
            "{} was a product of",
            "{} was created by",
            "{} was developed by",
            "{}, a product manufactured by",
        ),
        cues=(r"developed by|created by|a product",),
    ),
    _r(
        "P127",
        "owned by",
        "organisation",
        (
            "{} belongs to",
            "The owner of {} is",
            "{} is the property of",
            "{} is owned and operated by",
            "{} is controlled by",
            "The entity that owns {} is",
            "{} is in the hands of",
            "Ownership of {} lies with",
            "{} is held by",
            "{} is operated under the ownership of",
            "{} was acquired by",
            "{}'s parent organisation is",
            "{}'s proprietor is",
            "The proprietor of {} is",
            "{} falls under the ownership of",
            "Legally, {} belongs to",
        ),
        (
            "{} owner",
            "{}'s owner",
            "{} is owned by",
            "{}, by",
            "{}, from",
            "{} is from",
        ),
        cues=(r"\bown(er|ed)\b|^\{\}, by$",),
    ),
    _r(
        "P495",
        "country of origin",
        "country",
        (
            "{} comes from the country of",
            "The country of origin of {} is",
            "{} was produced in",
            "{}'s country of origin is",
            "{} was made in",
            "{} originally comes from",
            "The country where {} was created is",
            "{} is a production from",
            "{} hails from",
            "The homeland of {} is",
            "{} was first produced in",
            "{} has its origins in",
            "The nation that produced {} is",
            "{} was conceived in",
            "The place of origin of {} is",
            "{} is native to the country of",
        ),
        (
            "{}, that was created in",
            "{}, created in",
            "{} was created in",
            "{} was created in the country of",
            "{}, formulated in",
            "{}, that was formulated in",
            "{} was formulated in",
            "{} was developed in",
            "{}, that was developed in",
            "{}, developed in",
            "{}, that originated in",
            "{} originated in",
            "{} from",
            "{}, that was from",
            "{} was from",
        ),
        cues=(r"(created|formulated|developed|originated) in|from$|country of origin",),
        typical=COUNTRY_NAMES,
    ),
)

#: All relations, by Wikidata id.
RELATIONS: dict[str, Relation] = {r.id: r for r in _RELATIONS}

#: For each relation, the relations whose answers may rightly move when its answer moves (a
#: landmark moved to Italy is now in Europe, and its official language is Italian; a car made
#: by another company is owned by it). Neither in an edit's scope nor out of it: fact gates do
#: not calibrate against them and the harness does not probe them for locality.
IMPLIED: dict[str, frozenset[str]] = {
    rid: frozenset(implied)
    for rid, implied in {
        "P17": ("P30", "P131", "P276", "P37", "P159"),  # where a place is
        "P131": ("P17", "P30", "P276", "P37"),
        "P276": ("P17", "P30", "P131", "P37"),
        "P30": ("P17", "P131", "P276"),
        "P159": ("P17",),  # where an organisation is
        "P495": ("P364", "P407"),  # a work's country and its language
        "P176": ("P178", "P127", "P495"),  # who makes a product, owns it, and where
        "P178": ("P176", "P127", "P495"),
        "P127": ("P176", "P178"),
        "P641": ("P413",),  # a sport and the positions in it
        "P413": ("P641",),
        "P106": ("P101",),  # an occupation and its field
        "P101": ("P106",),
    }.items()
}


def independent_relations(relation: Relation | None) -> list[Relation]:
    """The relations whose answers an edit of ``relation`` must leave alone: every other one
    in the bank, less those with the same kind of object and those it :data:`IMPLIED` (all of
    them when ``relation`` is None).

    Example:
        >>> sorted(r.id for r in independent_relations(RELATIONS["P17"]))[:4]
        ['P101', 'P103', 'P106', 'P108']
    """
    if relation is None:
        return list(_RELATIONS)
    tied = IMPLIED.get(relation.id, frozenset()) | {relation.id}
    return [r for r in _RELATIONS if r.id not in tied and r.object_kind != relation.object_kind]


#: CounterFact templates shared by several relations -> candidates, the default first.
#: The old object chooses among them (see :func:`match_relation`).
_SHARED: dict[str, tuple[str, ...]] = {
    "{} is located in": ("P131", "P17", "P30"),
    "{}, in": ("P131", "P17", "P30"),
    "{} is in": ("P131", "P17", "P30"),
    "{}, the": ("P413", "P1303", "P641", "P136"),
    "{} plays": ("P136", "P1303", "P641", "P413"),
    "{}, from": ("P127", "P495"),
    "{} is from": ("P127", "P495"),
    "{} from": ("P495", "P127"),
    "{} is developed by": ("P176", "P178"),
}


@lru_cache(maxsize=1)
def _template_index() -> dict[str, tuple[str, ...]]:
    index: dict[str, tuple[str, ...]] = {}
    for rel in _RELATIONS:
        for t in rel.counterfact_templates:
            key = normalize_template(t)
            if key in index and rel.id not in index[key]:
                index[key] = (*index[key], rel.id)
            else:
                index.setdefault(key, (rel.id,))
    for t, ids in _SHARED.items():
        index[normalize_template(t)] = ids
    return index


def get_relation(relation_id: str) -> Relation:
    """The relation with Wikidata id ``relation_id`` (e.g. "P27").

    Returns:
        The relation.
    """
    try:
        return RELATIONS[relation_id]
    except KeyError:
        raise DistributionError(
            f"No relation {relation_id!r} in the bank; known: {', '.join(sorted(RELATIONS))}."
        ) from None


def _as_template(text: str, subject: str | None) -> str | None:
    if "{}" in text:
        return text
    if subject is None:
        return None
    return template_of(text, subject)


def relation_candidates(
    prompt_or_template: str, subject: str | None = None, *, cues: bool = True
) -> tuple[Relation, ...]:
    """All relations a prompt may express, the most likely first (empty if none)."""
    template = _as_template(prompt_or_template, subject)
    if template is None:
        return ()
    keys = [normalize_template(template).rstrip()]
    if subject is not None and "{}" not in prompt_or_template:
        _, core = split_noisy_prefix(prompt_or_template, subject)
        core_t = template_of(core, subject)
        if core_t is not None:
            keys.append(normalize_template(core_t))
    index = _template_index()
    for key in keys:
        if key in index:
            return tuple(RELATIONS[i] for i in index[key])
    if not cues:
        return ()
    key = keys[-1]
    return tuple(r for r in _RELATIONS if any(re.search(c, key) for c in r.cues))


def match_relation(
    prompt_or_template: str,
    subject: str | None = None,
    *,
    objects: Sequence[str] = (),
    cues: bool = True,
) -> Relation | None:
    """The relation of a prompt, or None when no template or cue matches.

    Args:
        prompt_or_template: a template with ``{}`` ("The mother tongue of {} is"), or a prompt
            with the subject written out (then pass ``subject``). A noisy prefix before the
            sentence about the subject is ignored.
        subject: the subject, when the prompt has it written out.
        objects: the old object first (then optionally the new one). Only used for templates
            CounterFact shares across relations ("{}, the": instrument, sport or position):
            the first candidate whose typical objects include the old object wins.
        cues: also try the relations' keyword cues when the exact template is unknown.

    Returns:
        The relation, or None.

    Example:
        >>> match_relation("The mother tongue of {} is").id
        'P103'
        >>> match_relation("{} is located in", objects=["Antarctica"]).id
        'P30'
    """
    candidates = relation_candidates(prompt_or_template, subject, cues=cues)
    if not candidates:
        return None
    if len(candidates) > 1 and objects:
        old = normalize(objects[0])
        for rel in candidates:
            if old in rel.typical_objects:
                return rel
    return candidates[0]
