"""Edit requests validate their fields with clear errors."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sake_lens import EditRequest, EditRequestError


def test_template_and_filled_forms_are_equivalent():
    a = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    b = EditRequest(
        "Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "French", "English"
    )
    assert a == b
    assert a.text == "The mother tongue of Danielle Darrieux is"
    assert EditRequest.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject": ""}, "subject is empty"),
        ({"subject": "   "}, "subject is empty"),
        ({"subject": "\u200b"}, "invisible"),
        ({"new": "\u200b\u00a0"}, "new is empty"),
        ({"old": ""}, "old is empty"),
        ({"new": " \t"}, "new is empty"),
        ({"prompt": "The language of Someone Else is"}, "does not appear in the prompt"),
        ({"new": "French"}, "same"),
        ({"new": "french"}, "same"),
        ({"new": " French. "}, "punctuation"),
        ({"old": "Paris", "new": "paris!"}, "punctuation"),
        ({"prompt": "{}"}, "only the subject"),
        ({"prompt": " {} . "}, "only the subject"),
        ({"prompt": "{} and {} are"}, "placeholders"),
        ({"subject": 3}, "must be a string"),
    ],
)
def test_bad_requests_name_the_problem(kwargs, match):
    fields = {
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of {} is",
        "old": "French",
        "new": "English",
    }
    fields.update(kwargs)
    with pytest.raises(EditRequestError, match=match):
        EditRequest(**fields)


def test_non_ascii_and_right_to_left_text_work():
    r = EditRequest("محمد عبده", "اللغة الأم لـ {} هي", "العربية", "الفرنسية")
    assert r.subject in r.text
    r = EditRequest("Zoë Ångström", "Zoë Ångström was born in", "Oslo", "Kraków")
    assert r.template == "{} was born in"


def test_missing_keys_in_dict():
    with pytest.raises(EditRequestError, match="missing"):
        EditRequest.from_dict({"subject": "x"})


@given(st.text(), st.text(), st.text(), st.text())
def test_random_strings_validate_or_raise_the_documented_error(subject, prompt, old, new):
    try:
        r = EditRequest(subject, prompt, old, new)
    except EditRequestError:
        return
    assert r.subject and r.old and r.new and "{}" in r.prompt
    assert r.subject in r.text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--old", "Paris", "--new", " Paris. "], "punctuation"),
        (["--prompt", "{}", "--old", "Paris", "--new", "Rome"], "only the subject"),
    ],
)
def test_edit_cli_refuses_a_request_that_changes_nothing(flags, message, capsys, monkeypatch):
    """One line, exit 2, before the model is loaded."""
    from sake_lens.cli import edit as edit_cli
    from sake_lens.cli.main import main

    def no_model(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(edit_cli, "load_from_args", no_model)
    argv = ["edit", "--subject", "France", *flags]
    if "--prompt" not in flags:
        argv += ["--prompt", "The capital of {} is"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_edit_cli_warns_when_the_model_does_not_say_the_old_object(model, caplog):
    from sake_lens.cli.edit import check_old_object

    request = EditRequest("France", "The capital of {} is", "Marseille", "Lyon")
    with caplog.at_level(logging.WARNING):
        said = check_old_object(model, request)
    assert "does not say 'Marseille'" in caplog.text and said.strip()[:5] in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_old_object(model, EditRequest("France", "The capital of {} is", "Paris", "Lyon"))
    assert "does not say" not in caplog.text
