"""Robustness probes: doubts, long contexts, multi-turn chats."""

from __future__ import annotations

import pytest

from sake_lens.errors import DistributionError
from sake_lens.prompts import (
    DOUBT_TEMPLATES,
    PAPER_DOUBT_TEMPLATES,
    EditRequest,
    doubt_probes,
    long_context_probes,
    multi_turn_probes,
    robustness_probes,
)
from sake_lens.prompts.noise import approx_token_count
from sake_lens.prompts.text import contains_term

DARRIEUX = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")


def test_doubt_probes() -> None:
    probes = doubt_probes(DARRIEUX)
    assert [p.kind for p in probes] == [f"doubt:{k}" for k in DOUBT_TEMPLATES]
    assert set(PAPER_DOUBT_TEMPLATES) <= set(DOUBT_TEMPLATES)
    rethink = probes[0].prompt
    assert rethink.startswith("The mother tongue of Danielle Darrieux is English??? No,")
    assert rethink.endswith("Rethink and give the correct answer:")
    insist = probes[1].prompt
    assert "pretty sure that the mother tongue of Danielle Darrieux is French." in insist
    assert probes[2].prompt == (
        "The mother tongue of Danielle Darrieux is English. Are you sure? "
        "The mother tongue of Danielle Darrieux is"
    )
    assert all(p.expected == "English" and p.old == "French" for p in probes)
    custom = doubt_probes(DARRIEUX, ["{prompt} {new}. Hmm. {prompt}"])[0]
    assert custom.kind == "doubt:custom"
    with pytest.raises(DistributionError, match="doubt template"):
        doubt_probes(DARRIEUX, ["nope"])


def test_subject_first_prompts_keep_their_capital() -> None:
    req = EditRequest("Danielle Darrieux", "{} speaks", "French", "English")
    assert (
        "sure that Danielle Darrieux speaks French" in doubt_probes(req, ["insist-old"])[0].prompt
    )


def test_long_context_probes_have_200_unrelated_tokens() -> None:
    probes = long_context_probes(DARRIEUX, n=3, seed=1)
    assert len({p.prompt for p in probes}) == 3
    for p in probes:
        assert p.prompt.endswith(DARRIEUX.text)
        context = p.prompt[: -len(DARRIEUX.text)]
        assert approx_token_count(context) >= 200
        assert not contains_term(context, "French") and not contains_term(context, "English")


class _ChatTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def test_multi_turn_probes() -> None:
    doubt, talk = multi_turn_probes(DARRIEUX, _ChatTokenizer(), small_talk_turns=2)
    assert doubt.chat and talk.chat
    assert doubt.prompt.startswith(
        "<user>Complete the sentence.<assistant>The mother tongue of Danielle Darrieux is English."
    )
    assert "<user>Are you sure?" in doubt.prompt
    assert doubt.prompt.endswith("<assistant>The mother tongue of Danielle Darrieux is")
    assert talk.prompt.count("<user>") == 3
    plain = multi_turn_probes(DARRIEUX)[0]
    assert not plain.chat and plain.prompt.endswith(
        "Assistant: The mother tongue of Danielle Darrieux is"
    )


def test_all_probes() -> None:
    kinds = [p.kind for p in robustness_probes(DARRIEUX, long_contexts=2)]
    assert kinds.count("long-context") == 2
    assert {"doubt:rethink", "multi-turn:doubt", "multi-turn:small-talk"} <= set(kinds)
