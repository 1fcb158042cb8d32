"""Fixed texts of the evaluation harness, written for sake_lens (no third-party text).

* :data:`NEUTRAL_TEXT` — about 300 tokens of plain everyday prose that names no person, place,
  language, religion or company, for the perplexity side-effect check.
* :data:`UNRELATED_PROMPTS` — open prompts for generations whose n-gram entropy is compared
  with and without an edit (and on which a scope gate should stay closed).
* :data:`FALLBACK_DOUBTS` — two doubt follow-ups, used only when ``sake_lens.prompts.probes``
  is not installed.
"""

from __future__ import annotations

__all__ = ["NEUTRAL_TEXT", "UNRELATED_PROMPTS", "FALLBACK_DOUBTS", "split_first_sentence"]

NEUTRAL_TEXT = (
    "Baking bread at home takes patience more than skill. "
    "The first step is to mix flour, water, salt and a little yeast in a large bowl until no dry "
    "flour is left. The dough will look rough and sticky at this point, and that is normal. "
    "After a short rest, the dough is folded over itself a few times, which helps it become "
    "smooth and elastic without much effort. It is then covered with a clean cloth and left in "
    "a warm corner of the kitchen. Over the next few hours it slowly rises, and small bubbles "
    "appear on its surface. A simple way to check whether it is ready is to press it gently "
    "with a finger: if the dent fills back slowly, the dough has risen enough. "
    "Next, the dough is shaped into a round loaf and placed on a floured tray. "
    "Meanwhile the oven is heated as hot as it will go, ideally with a heavy pot inside. "
    "The loaf is scored with a sharp knife so that it can expand evenly, and then it goes into "
    "the hot pot with the lid on. The steam trapped under the lid keeps the crust soft for the "
    "first part of baking, which lets the bread grow taller. After about twenty minutes the "
    "lid is removed, and the crust turns a deep golden brown. "
    "When the bread comes out, it should sound hollow when tapped on the bottom. "
    "It is tempting to cut it right away, but the inside is still cooking from the heat, so it "
    "is better to let it cool on a rack for at least an hour. "
    "Once cooled, the bread keeps well for two or three days in a paper bag, and slices that "
    "have gone dry can still be toasted or turned into crumbs for another recipe."
)

UNRELATED_PROMPTS: tuple[str, ...] = (
    "The best way to keep a kitchen tidy is",
    "On a rainy afternoon, the children decided to",
    "A good habit to start the morning with is",
    "The old wooden bench in the garden",
    "When the power went out, we",
    "The recipe for a simple vegetable soup starts with",
    "To fix a squeaky door, you should",
    "The bus was late again, so",
    "After the long walk, the dog",
    "The most important thing about a first job is",
    "In the autumn, the leaves on the trees",
    "A useful tip for studying for exams is",
)

#: Two doubt follow-ups (fallback when ``sake_lens.prompts.probes`` is not available): the
#: model has answered the edited fact, is challenged, and is asked again. ``{prompt}`` is the
#: edit prompt (subject filled in), ``{answer}`` the edited answer.
FALLBACK_DOUBTS: tuple[str, ...] = (
    "{prompt} {answer}.\nAre you sure? Please think again.\n{prompt}",
    "{prompt} {answer}.\nI don't think that is right. Let me ask once more.\n{prompt}",
)


def split_first_sentence(text: str) -> tuple[str, str]:
    """``(first sentence, rest)``; the rest keeps its leading space for teacher forcing."""
    cut = text.find(". ")
    if cut < 0:
        raise ValueError("the text needs at least two sentences")
    return text[: cut + 1], text[cut + 1 :]
