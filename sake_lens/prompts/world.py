"""A small table of world facts for logical-implication probes (data module).

Rows are (entity, attribute, value) triples: country -> capital / official language / continent
/ currency, city -> country, language -> family / script / homeland, religion -> scripture /
place of worship / founder, playing position -> sport, company or broadcaster -> country.

Written by hand from common knowledge, and deliberately conservative: where a fact is
ambiguous (several official languages, a transcontinental country, two capitals) the row is
left out rather than guessed. These rows are *candidates*: whether a given model knows them is
checked on the model with :func:`sake_lens.prompts.implications.verify_attribute_table`, never
assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DistributionError
from .text import normalize

__all__ = [
    "AttributeRow",
    "AttributeTable",
    "ATTRIBUTE_QUESTIONS",
    "CONTINENTS",
    "DEFAULT_TABLE",
    "COUNTRY_NAMES",
]

#: Direct questions used to check a row on a model; ``{}`` is the row's entity and the value
#: should be the model's next word.
ATTRIBUTE_QUESTIONS: dict[str, str] = {
    "capital": "The capital of {} is",
    "language": "The official language of {} is",
    "continent": "{} is a country on the continent of",
    "currency": "The currency of {} is the",
    "country": "{} is a city in the country of",
    "family": "The {} language belongs to the",
    "script": "The {} language is written in the",
    "homeland": "The {} language originated in",
    "scripture": "The holy book of {} is the",
    "worship": "Followers of {} pray in a",
    "founder": "The founder of {} was",
    "sport": "A {} is a player in the sport of",
    "based_in": "{} is an organisation based in",
}

CONTINENTS: tuple[str, ...] = (
    "Africa",
    "Antarctica",
    "Asia",
    "Europe",
    "North America",
    "Oceania",
    "South America",
)

# name, capital, official language, continent, currency (None: ambiguous, left out)
_COUNTRIES: tuple[tuple[str, str | None, str | None, str | None, str | None], ...] = (
    ("France", "Paris", "French", "Europe", "euro"),
    ("Germany", "Berlin", "German", "Europe", "euro"),
    ("Italy", "Rome", "Italian", "Europe", "euro"),
    ("Spain", "Madrid", "Spanish", "Europe", "euro"),
    ("Portugal", "Lisbon", "Portuguese", "Europe", "euro"),
    ("Netherlands", "Amsterdam", "Dutch", "Europe", "euro"),
    ("Belgium", "Brussels", None, "Europe", "euro"),
    ("Switzerland", "Bern", None, "Europe", "franc"),
    ("Austria", "Vienna", "German", "Europe", "euro"),
    ("Poland", "Warsaw", "Polish", "Europe", "zloty"),
    ("Czech Republic", "Prague", "Czech", "Europe", "koruna"),
    ("Slovakia", "Bratislava", "Slovak", "Europe", "euro"),
    ("Hungary", "Budapest", "Hungarian", "Europe", "forint"),
    ("Romania", "Bucharest", "Romanian", "Europe", "leu"),
    ("Bulgaria", "Sofia", "Bulgarian", "Europe", "lev"),
    ("Greece", "Athens", "Greek", "Europe", "euro"),
    ("Croatia", "Zagreb", "Croatian", "Europe", "euro"),
    ("Serbia", "Belgrade", "Serbian", "Europe", "dinar"),
    ("Slovenia", "Ljubljana", "Slovene", "Europe", "euro"),
    ("Albania", "Tirana", "Albanian", "Europe", "lek"),
    ("Ukraine", "Kyiv", "Ukrainian", "Europe", "hryvnia"),
    ("Belarus", "Minsk", None, "Europe", "ruble"),
    ("Russia", "Moscow", "Russian", None, "ruble"),
    ("Lithuania", "Vilnius", "Lithuanian", "Europe", "euro"),
    ("Latvia", "Riga", "Latvian", "Europe", "euro"),
    ("Estonia", "Tallinn", "Estonian", "Europe", "euro"),
    ("Finland", "Helsinki", None, "Europe", "euro"),
    ("Sweden", "Stockholm", "Swedish", "Europe", "krona"),
    ("Norway", "Oslo", "Norwegian", "Europe", "krone"),
    ("Denmark", "Copenhagen", "Danish", "Europe", "krone"),
    ("Iceland", "Reykjavik", "Icelandic", "Europe", "krona"),
    ("Ireland", "Dublin", None, "Europe", "euro"),
    ("United Kingdom", "London", "English", "Europe", "pound"),
    ("England", "London", "English", "Europe", "pound"),
    ("Scotland", "Edinburgh", None, "Europe", "pound"),
    ("Wales", "Cardiff", None, "Europe", "pound"),
    ("Malta", "Valletta", None, "Europe", "euro"),
    ("Turkey", "Ankara", "Turkish", None, "lira"),
    ("Georgia", "Tbilisi", "Georgian", None, "lari"),
    ("Armenia", "Yerevan", "Armenian", "Asia", "dram"),
    ("Israel", "Jerusalem", "Hebrew", "Asia", "shekel"),
    ("Lebanon", "Beirut", "Arabic", "Asia", "pound"),
    ("Syria", "Damascus", "Arabic", "Asia", "pound"),
    ("Iraq", "Baghdad", None, "Asia", "dinar"),
    ("Iran", "Tehran", "Persian", "Asia", "rial"),
    ("Saudi Arabia", "Riyadh", "Arabic", "Asia", "riyal"),
    ("Jordan", "Amman", "Arabic", "Asia", "dinar"),
    ("Oman", "Muscat", "Arabic", "Asia", "rial"),
    ("Bahrain", "Manama", "Arabic", "Asia", "dinar"),
    ("Afghanistan", "Kabul", None, "Asia", "afghani"),
    ("Pakistan", "Islamabad", None, "Asia", "rupee"),
    ("India", "New Delhi", None, "Asia", "rupee"),
    ("Bangladesh", "Dhaka", "Bengali", "Asia", "taka"),
    ("Nepal", "Kathmandu", "Nepali", "Asia", "rupee"),
    ("China", "Beijing", "Chinese", "Asia", "yuan"),
    ("Japan", "Tokyo", "Japanese", "Asia", "yen"),
    ("South Korea", "Seoul", "Korean", "Asia", "won"),
    ("North Korea", "Pyongyang", "Korean", "Asia", "won"),
    ("Mongolia", "Ulaanbaatar", "Mongolian", "Asia", "tugrik"),
    ("Taiwan", "Taipei", None, "Asia", "dollar"),
    ("Vietnam", "Hanoi", "Vietnamese", "Asia", "dong"),
    ("Thailand", "Bangkok", "Thai", "Asia", "baht"),
    ("Cambodia", "Phnom Penh", "Khmer", "Asia", "riel"),
    ("Laos", "Vientiane", "Lao", "Asia", "kip"),
    ("Malaysia", "Kuala Lumpur", "Malay", "Asia", "ringgit"),
    ("Indonesia", "Jakarta", "Indonesian", "Asia", "rupiah"),
    ("Philippines", "Manila", None, "Asia", "peso"),
    ("Kazakhstan", "Astana", None, "Asia", "tenge"),
    ("Egypt", "Cairo", "Arabic", "Africa", "pound"),
    ("Libya", "Tripoli", "Arabic", "Africa", "dinar"),
    ("Morocco", "Rabat", None, "Africa", "dirham"),
    ("Algeria", "Algiers", None, "Africa", "dinar"),
    ("Tunisia", "Tunis", "Arabic", "Africa", "dinar"),
    ("Sudan", "Khartoum", None, "Africa", "pound"),
    ("Ethiopia", "Addis Ababa", "Amharic", "Africa", "birr"),
    ("Kenya", "Nairobi", None, "Africa", "shilling"),
    ("Uganda", "Kampala", None, "Africa", "shilling"),
    ("Nigeria", "Abuja", "English", "Africa", "naira"),
    ("Ghana", "Accra", "English", "Africa", "cedi"),
    ("Senegal", "Dakar", "French", "Africa", "franc"),
    ("Niger", "Niamey", "French", "Africa", "franc"),
    ("South Africa", None, None, "Africa", "rand"),
    ("Madagascar", "Antananarivo", None, "Africa", "ariary"),
    ("United States", "Washington", "English", "North America", "dollar"),
    ("Canada", "Ottawa", None, "North America", "dollar"),
    ("Mexico", "Mexico City", "Spanish", "North America", "peso"),
    ("Cuba", "Havana", "Spanish", "North America", "peso"),
    ("Jamaica", "Kingston", "English", "North America", "dollar"),
    ("Haiti", "Port-au-Prince", None, "North America", "gourde"),
    ("Guatemala", "Guatemala City", "Spanish", "North America", "quetzal"),
    ("Honduras", "Tegucigalpa", "Spanish", "North America", "lempira"),
    ("Brazil", "Brasilia", "Portuguese", "South America", "real"),
    ("Argentina", "Buenos Aires", "Spanish", "South America", "peso"),
    ("Chile", "Santiago", "Spanish", "South America", "peso"),
    ("Peru", "Lima", None, "South America", "sol"),
    ("Colombia", "Bogota", "Spanish", "South America", "peso"),
    ("Venezuela", "Caracas", "Spanish", "South America", "bolivar"),
    ("Bolivia", None, None, "South America", "boliviano"),
    ("Uruguay", "Montevideo", "Spanish", "South America", "peso"),
    ("Ecuador", "Quito", "Spanish", "South America", "dollar"),
    ("Australia", "Canberra", "English", "Oceania", "dollar"),
    ("New Zealand", "Wellington", "English", "Oceania", "dollar"),
    ("Fiji", "Suva", None, "Oceania", "dollar"),
)

#: Other names of entities (case-insensitive) -> the name used in the table.
ALIASES: dict[str, str] = {
    "USA": "United States",
    "US": "United States",
    "U.S.": "United States",
    "United States of America": "United States",
    "America": "United States",
    "UK": "United Kingdom",
    "Britain": "United Kingdom",
    "Great Britain": "United Kingdom",
    "Holland": "Netherlands",
    "the Netherlands": "Netherlands",
    "Korea": "South Korea",
    "Republic of Korea": "South Korea",
    "Czechia": "Czech Republic",
    "People's Republic of China": "China",
    "Kiev": "Kyiv",
    "Odessa": "Odesa",
    "St. Petersburg": "Saint Petersburg",
    "New York City": "New York",
    "Delhi": "New Delhi",
    "Persian language": "Persian",
    "Farsi": "Persian",
    "Tagalog": "Filipino",
    "Slovenian": "Slovene",
    "Catholicism": "Christianity",
    "Christian": "Christianity",
    "Islamic": "Islam",
    "Muslim": "Islam",
    "Jewish": "Judaism",
    "Buddhist": "Buddhism",
    "Hindu": "Hinduism",
    "goalie": "goaltender",
    "goalkeeper (association football)": "goalkeeper",
}

_CITIES: dict[str, tuple[str, ...]] = {
    "France": (
        "Lyon",
        "Marseille",
        "Nice",
        "Toulouse",
        "Bordeaux",
        "Strasbourg",
        "Lille",
        "Nantes",
        "Cannes",
        "Versailles",
    ),
    "Germany": (
        "Munich",
        "Hamburg",
        "Cologne",
        "Frankfurt",
        "Dresden",
        "Dortmund",
        "Stuttgart",
        "Leipzig",
        "Düsseldorf",
        "Bonn",
        "Hanover",
        "Nuremberg",
        "Bremen",
        "Heidelberg",
    ),
    "Italy": (
        "Milan",
        "Naples",
        "Florence",
        "Venice",
        "Turin",
        "Bologna",
        "Genoa",
        "Palermo",
        "Verona",
        "Pisa",
    ),
    "Spain": ("Barcelona", "Valencia", "Seville", "Bilbao", "Malaga"),
    "Portugal": ("Porto",),
    "Netherlands": ("Rotterdam", "Utrecht", "Eindhoven", "The Hague"),
    "Belgium": ("Antwerp", "Ghent", "Bruges"),
    "Switzerland": ("Zurich", "Geneva", "Basel", "Lausanne"),
    "Austria": ("Salzburg", "Graz", "Innsbruck"),
    "Poland": ("Krakow", "Gdansk", "Wroclaw", "Poznan", "Lodz"),
    "Czech Republic": ("Brno",),
    "Greece": ("Thessaloniki",),
    "Croatia": ("Split", "Dubrovnik"),
    "Ukraine": ("Kharkiv", "Odesa", "Lviv"),
    "Russia": ("Saint Petersburg", "Novosibirsk", "Kazan", "Yekaterinburg"),
    "Finland": ("Tampere", "Turku"),
    "Sweden": ("Gothenburg", "Uppsala"),
    "Norway": ("Bergen", "Trondheim"),
    "Denmark": ("Aarhus",),
    "Ireland": ("Cork", "Galway"),
    "England": (
        "Manchester",
        "Liverpool",
        "Birmingham",
        "Leeds",
        "Sheffield",
        "Bristol",
        "Oxford",
        "Cambridge",
        "Newcastle",
        "Nottingham",
        "Leicester",
        "Brighton",
        "Portsmouth",
        "Southampton",
        "Norwich",
        "York",
        "Bath",
        "Canterbury",
        "Plymouth",
        "Derby",
        "Bolton",
        "Coventry",
    ),
    "Scotland": ("Glasgow", "Aberdeen", "Dundee"),
    "Wales": ("Swansea",),
    "Northern Ireland": ("Belfast",),
    "Turkey": ("Istanbul", "Izmir"),
    "Israel": ("Tel Aviv", "Haifa"),
    "Syria": ("Aleppo",),
    "Iraq": ("Basra",),
    "Iran": ("Isfahan",),
    "Saudi Arabia": ("Mecca", "Jeddah", "Medina"),
    "Egypt": ("Alexandria",),
    "Pakistan": ("Karachi", "Lahore"),
    "India": ("Mumbai", "Bangalore", "Chennai", "Kolkata", "Hyderabad", "Pune", "Ahmedabad"),
    "China": ("Shanghai", "Guangzhou", "Shenzhen", "Wuhan", "Nanjing", "Hong Kong"),
    "Japan": ("Osaka", "Kyoto", "Yokohama", "Nagoya", "Sapporo", "Kobe", "Hiroshima", "Fukuoka"),
    "South Korea": ("Busan", "Incheon"),
    "Vietnam": ("Ho Chi Minh City",),
    "Australia": ("Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide", "Hobart", "Darwin"),
    "New Zealand": ("Auckland", "Christchurch"),
    "Canada": (
        "Toronto",
        "Montreal",
        "Vancouver",
        "Calgary",
        "Edmonton",
        "Winnipeg",
        "Quebec City",
        "Halifax",
    ),
    "United States": (
        "New York",
        "Los Angeles",
        "Chicago",
        "Boston",
        "Seattle",
        "Philadelphia",
        "Atlanta",
        "Miami",
        "Houston",
        "Dallas",
        "Detroit",
        "Denver",
        "San Francisco",
        "Baltimore",
        "Pittsburgh",
        "Cleveland",
        "Cincinnati",
        "Indianapolis",
        "Honolulu",
        "Minneapolis",
        "Tampa",
        "Sacramento",
        "Las Vegas",
        "New Orleans",
        "Nashville",
        "Brooklyn",
        "Hollywood",
        "Pasadena",
        "San Diego",
        "Austin",
        "Memphis",
        "Milwaukee",
    ),
    "Mexico": ("Guadalajara", "Monterrey"),
    "Brazil": ("Rio de Janeiro", "Sao Paulo"),
    "Colombia": ("Medellin",),
    "South Africa": ("Johannesburg", "Cape Town", "Durban", "Pretoria"),
    "Nigeria": ("Lagos",),
    "Morocco": ("Casablanca", "Marrakesh"),
}

# language, family, script, homeland (None: left out)
_LANGUAGES: tuple[tuple[str, str | None, str | None, str | None], ...] = (
    ("French", "Romance", "Latin", "France"),
    ("Spanish", "Romance", "Latin", "Spain"),
    ("Italian", "Romance", "Latin", "Italy"),
    ("Portuguese", "Romance", "Latin", "Portugal"),
    ("Romanian", "Romance", "Latin", "Romania"),
    ("Catalan", "Romance", "Latin", "Spain"),
    ("English", "Germanic", "Latin", "England"),
    ("German", "Germanic", "Latin", "Germany"),
    ("Dutch", "Germanic", "Latin", "Netherlands"),
    ("Swedish", "Germanic", "Latin", "Sweden"),
    ("Norwegian", "Germanic", "Latin", "Norway"),
    ("Danish", "Germanic", "Latin", "Denmark"),
    ("Icelandic", "Germanic", "Latin", "Iceland"),
    ("Russian", "Slavic", "Cyrillic", "Russia"),
    ("Ukrainian", "Slavic", "Cyrillic", "Ukraine"),
    ("Belarusian", "Slavic", "Cyrillic", "Belarus"),
    ("Bulgarian", "Slavic", "Cyrillic", "Bulgaria"),
    ("Serbian", "Slavic", None, "Serbia"),
    ("Polish", "Slavic", "Latin", "Poland"),
    ("Czech", "Slavic", "Latin", "Czech Republic"),
    ("Slovak", "Slavic", "Latin", "Slovakia"),
    ("Croatian", "Slavic", "Latin", "Croatia"),
    ("Slovene", "Slavic", "Latin", "Slovenia"),
    ("Finnish", "Uralic", "Latin", "Finland"),
    ("Estonian", "Uralic", "Latin", "Estonia"),
    ("Hungarian", "Uralic", "Latin", "Hungary"),
    ("Lithuanian", "Baltic", "Latin", "Lithuania"),
    ("Latvian", "Baltic", "Latin", "Latvia"),
    ("Irish", "Celtic", "Latin", "Ireland"),
    ("Welsh", "Celtic", "Latin", "Wales"),
    ("Greek", "Hellenic", "Greek", "Greece"),
    ("Armenian", None, "Armenian", "Armenia"),
    ("Georgian", "Kartvelian", "Georgian", "Georgia"),
    ("Turkish", "Turkic", "Latin", "Turkey"),
    ("Arabic", "Semitic", "Arabic", None),
    ("Hebrew", "Semitic", "Hebrew", "Israel"),
    ("Amharic", "Semitic", None, "Ethiopia"),
    ("Persian", "Iranian", "Arabic", "Iran"),
    ("Hindi", "Indo-Aryan", "Devanagari", "India"),
    ("Nepali", "Indo-Aryan", "Devanagari", "Nepal"),
    ("Urdu", "Indo-Aryan", "Arabic", "Pakistan"),
    ("Bengali", "Indo-Aryan", "Bengali", None),
    ("Tamil", "Dravidian", "Tamil", "India"),
    ("Telugu", "Dravidian", "Telugu", "India"),
    ("Malayalam", "Dravidian", "Malayalam", "India"),
    ("Kannada", "Dravidian", "Kannada", "India"),
    ("Chinese", "Sino-Tibetan", None, "China"),
    ("Japanese", "Japonic", None, "Japan"),
    ("Korean", "Koreanic", "Hangul", "Korea"),
    ("Vietnamese", "Austroasiatic", "Latin", "Vietnam"),
    ("Khmer", "Austroasiatic", "Khmer", "Cambodia"),
    ("Thai", "Kra-Dai", "Thai", "Thailand"),
    ("Indonesian", "Austronesian", "Latin", "Indonesia"),
    ("Malay", "Austronesian", "Latin", "Malaysia"),
    ("Filipino", "Austronesian", "Latin", "Philippines"),
    ("Mongolian", "Mongolic", "Cyrillic", "Mongolia"),
    ("Swahili", "Bantu", "Latin", None),
)

# religion, scripture, place of worship, founder
_RELIGIONS: tuple[tuple[str, str | None, str | None, str | None], ...] = (
    ("Islam", "Quran", "mosque", "Muhammad"),
    ("Christianity", "Bible", "church", "Jesus"),
    ("Judaism", "Torah", "synagogue", None),
    ("Buddhism", None, "temple", "Buddha"),
    ("Hinduism", "Vedas", "temple", None),
    ("Sikhism", None, "gurdwara", "Guru Nanak"),
)

_POSITIONS: dict[str, tuple[str, ...]] = {
    "soccer": ("midfielder", "goalkeeper", "defender", "striker"),
    "football": (
        "quarterback",
        "linebacker",
        "running back",
        "wide receiver",
        "tight end",
        "cornerback",
    ),
    "baseball": ("pitcher", "catcher", "outfielder", "shortstop", "infielder"),
    "hockey": ("goaltender", "defenceman"),
    "basketball": ("point guard", "shooting guard"),
}

_ORGANISATIONS: dict[str, tuple[str, ...]] = {
    "Japan": (
        "Toyota",
        "Honda",
        "Nissan",
        "Suzuki",
        "Mazda",
        "Sony",
        "Nintendo",
        "Sega",
        "Panasonic",
        "Toshiba",
        "Canon",
        "Yamaha",
    ),
    "Germany": ("BMW", "Volkswagen", "Audi", "Porsche", "Siemens", "Bosch", "Adidas", "SAP"),
    "Italy": ("Fiat", "Ferrari", "Lamborghini", "Maserati"),
    "France": ("Renault", "Peugeot"),
    "United States": (
        "Apple",
        "Microsoft",
        "Google",
        "IBM",
        "Intel",
        "Amazon",
        "Adobe",
        "Chevrolet",
        "Ford",
        "Cadillac",
        "Chrysler",
        "Dodge",
        "Boeing",
        "Atari",
        "Yahoo",
        "Oracle",
        "CBS",
        "NBC",
        "HBO",
        "MTV",
        "CNN",
        "ESPN",
        "PBS",
    ),
    "Finland": ("Nokia",),
    "Sweden": ("Ericsson", "Volvo", "Saab", "IKEA"),
    "South Korea": ("Samsung", "Hyundai", "Kia"),
    "Netherlands": ("Philips",),
    "United Kingdom": ("BBC", "Rolls-Royce", "BP"),
    "Switzerland": ("Nestle",),
    "China": ("Huawei", "Lenovo"),
}


@dataclass(frozen=True)
class AttributeRow:
    """One fact: ``entity``'s ``attribute`` is ``value`` (e.g. France, capital, Paris)."""

    entity: str
    attribute: str
    value: str

    def __post_init__(self) -> None:
        for name in ("entity", "attribute", "value"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DistributionError(
                    f"AttributeRow.{name} must be non-empty text, got {value!r}; write rows as "
                    "AttributeRow('France', 'capital', 'Paris')."
                )
        if self.attribute not in ATTRIBUTE_QUESTIONS:
            raise DistributionError(
                f"Unknown attribute {self.attribute!r}; use one of {sorted(ATTRIBUTE_QUESTIONS)} "
                "(or add a direct question for it to ATTRIBUTE_QUESTIONS)."
            )

    @property
    def question(self) -> str:
        """The direct question whose next word should be ``value``."""
        return ATTRIBUTE_QUESTIONS[self.attribute].replace("{}", self.entity)


@dataclass(frozen=True)
class AttributeTable:
    """A set of :class:`AttributeRow` with case-insensitive, alias-aware look-up."""

    rows: tuple[AttributeRow, ...]
    aliases: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    verified_on: str | None = None

    def __post_init__(self) -> None:
        rows = tuple(self.rows)
        if not all(isinstance(r, AttributeRow) for r in rows):
            raise DistributionError("AttributeTable.rows must all be AttributeRow objects.")
        object.__setattr__(self, "rows", rows)
        index: dict[tuple[str, str], str] = {}
        for row in rows:
            index.setdefault((normalize(row.entity), row.attribute), row.value)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_aliases", {normalize(k): v for k, v in self.aliases.items()})

    def __len__(self) -> int:
        return len(self.rows)

    def canonical(self, entity: str) -> str:
        """The table's name for ``entity`` (aliases resolved)."""
        return self._aliases.get(normalize(entity), entity)  # type: ignore[attr-defined]

    def get(self, entity: str, attribute: str) -> str | None:
        """The value of ``attribute`` for ``entity``, or None when the table has no such row."""
        key = (normalize(self.canonical(entity)), attribute)
        return self._index.get(key)  # type: ignore[attr-defined]

    def follow(self, entity: str, path: tuple[str, ...]) -> str | None:
        """Follow a chain of attributes (``("country", "capital")``); None if a link is missing."""
        value: str | None = entity
        for attribute in path:
            if value is None:
                return None
            value = self.get(value, attribute)
        return value

    def entities(self, attribute: str) -> frozenset[str]:
        """Normalised names of the entities that have ``attribute`` (aliases included)."""
        names = {normalize(r.entity) for r in self.rows if r.attribute == attribute}
        names |= {a for a, c in self._aliases.items() if normalize(c) in names}  # type: ignore[attr-defined]
        return frozenset(names)

    def subset(
        self, rows: tuple[AttributeRow, ...] | list[AttributeRow], verified_on: str | None = None
    ) -> AttributeTable:
        """A table with only ``rows`` (same aliases)."""
        return AttributeTable(tuple(rows), dict(self.aliases), verified_on=verified_on)


def _build_rows() -> tuple[AttributeRow, ...]:
    rows: list[AttributeRow] = []
    for name, capital, language, continent, currency in _COUNTRIES:
        for attribute, value in (
            ("capital", capital),
            ("language", language),
            ("continent", continent),
            ("currency", currency),
        ):
            if value:
                rows.append(AttributeRow(name, attribute, value))
        if capital and name not in ("England", "United Kingdom"):
            rows.append(AttributeRow(capital, "country", name))
    rows.append(AttributeRow("London", "country", "England"))
    for country, cities in _CITIES.items():
        rows.extend(AttributeRow(city, "country", country) for city in cities)
    for language, family, script, homeland in _LANGUAGES:
        for attribute, value in (("family", family), ("script", script), ("homeland", homeland)):
            if value:
                rows.append(AttributeRow(language, attribute, value))
    for religion, scripture, worship, founder in _RELIGIONS:
        for attribute, value in (
            ("scripture", scripture),
            ("worship", worship),
            ("founder", founder),
        ):
            if value:
                rows.append(AttributeRow(religion, attribute, value))
    for sport, positions in _POSITIONS.items():
        rows.extend(AttributeRow(position, "sport", sport) for position in positions)
    for country, names in _ORGANISATIONS.items():
        rows.extend(AttributeRow(name, "based_in", country) for name in names)
    return tuple(rows)


#: The full, unverified table. Check it on a model before trusting it.
DEFAULT_TABLE = AttributeTable(_build_rows(), dict(ALIASES))

#: Normalised names of the countries in the table (aliases included).
COUNTRY_NAMES: frozenset[str] = DEFAULT_TABLE.entities("continent") | DEFAULT_TABLE.entities(
    "capital"
)
