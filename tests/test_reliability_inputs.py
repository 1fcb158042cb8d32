"""Bad inputs give the documented error, naming the problem and the fix; odd but valid input works.

Complements tests/test_request.py (request fields), tests/test_sites_and_collection.py (unknown
and observation-only sites, empty prompts in collection, over-long prompts) and
tests/test_transport_errors.py (one sample, NaN rows, shapes): here the same problems reach the
public entry points (generation, steering, fitting, registries) and the real model.
"""

from __future__ import annotations

import argparse
import importlib
import re
import unicodedata
from pathlib import Path

import pytest
import torch

from sake_lens.analysis.sweep_config import SweepConfig
from sake_lens.cli.main import _COMMAND_MODULES, build_parser, main
from sake_lens.cli.sweep import edit_config_from_args, sweep_config_from_args
from sake_lens.collect.activations import collect_activations
from sake_lens.errors import (
    CollectionError,
    DistributionError,
    EditRequestError,
    FitError,
    ModelMismatchError,
    RegistryError,
    SakeLensError,
    SiteError,
)
from sake_lens.gate.fact import relation_views
from sake_lens.model.tokens import check_prompts, tokenize_batch
from sake_lens.prompts.distributions import DistributionConfig, build_prompt_sets
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import EditBook, load_edit, remove_saved, save_edit, set_saved_enabled
from sake_lens.steer.edit import EditConfig, fit_edit
from sake_lens.steer.generation import generate
from sake_lens.steer.hooks import steered
from sake_lens.transport import DiagonalMap, GaussianMap, MeanShiftMap

from .helpers import build_tiny_model
from .reliability_helpers import FAKE_GATE, SUBJECTS, FakeFeatures, fake_book, fake_edit

SITE = "ln_final.hook_out"
NO_VALIDATION = EditConfig(distributions=DistributionConfig(validate_targets=False))


# ----------------------------------------------------------------------------- prompts
@pytest.mark.parametrize("bad", [[""], ["  \t\n"], ["fine", " "], []])
def test_empty_or_whitespace_prompts_everywhere(tiny_model, bad: list[str]) -> None:
    for call in (
        lambda: check_prompts(bad),
        lambda: tokenize_batch(tiny_model, bad),
        lambda: generate(tiny_model, bad, max_new_tokens=2),
    ):
        with pytest.raises(CollectionError) as err:
            call()
        msg = str(err.value)
        assert ("empty or only whitespace" in msg and "remove it" in msg) or "No prompts" in msg


def test_over_long_prompt_in_generation_is_an_error_not_a_truncation(tiny_model) -> None:
    with pytest.raises(CollectionError, match="context"):
        generate(tiny_model, ["word " * 300], max_new_tokens=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompt": "The mother tongue is"}, "does not appear in the prompt"),
        ({"old": "\u00a0\u2003"}, "old is empty"),  # Unicode spaces only
        ({"new": "\n"}, "new is empty"),
        ({"new": "  French  "}, "same"),
    ],
)
def test_more_bad_requests_name_the_problem(kwargs: dict[str, str], match: str) -> None:
    fields = {
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of {} is",
        "old": "French",
        "new": "English",
        **kwargs,
    }
    with pytest.raises(EditRequestError, match=match):
        EditRequest(**fields)


def test_request_errors_are_value_errors_and_sake_lens_errors() -> None:
    with pytest.raises(ValueError) as err:
        EditRequest("X", "{} is", "a", "a")
    assert isinstance(err.value, SakeLensError)


# ----------------------------------------------------------------------------- paraphrases
TOWER = EditRequest("The Eiffel Tower", "{} is located in the city of", "Paris", "Rome")


@pytest.mark.parametrize(
    "bad", ["{} is in {}", "{} and {} are located in", "Tourists visit {} {} {}"]
)
def test_a_paraphrase_with_several_placeholders_is_refused_like_a_prompt(bad: str) -> None:
    with pytest.raises(EditRequestError, match="exactly one"):
        EditRequest("The Eiffel Tower", bad, "Paris", "Rome")
    with pytest.raises(DistributionError) as err:
        build_prompt_sets(TOWER, ["{} stands in", bad], DistributionConfig())
    msg = str(err.value)
    assert msg.startswith("Paraphrase 1 ") and f"{bad.count('{}')} '{{}}' placeholders" in msg
    assert "exactly one '{}' where the subject goes" in msg and "\n" not in msg


def test_the_subject_may_start_lower_case_in_a_paraphrase_and_is_spelled_as_asked() -> None:
    sets = build_prompt_sets(
        TOWER,
        ["Tourists visit the Eiffel Tower in the city of", "Photos of the Eiffel Tower show"],
        DistributionConfig(include_edit_prompt=False),
    )
    assert sets.paraphrases == [
        "Tourists visit The Eiffel Tower in the city of",
        "Photos of The Eiffel Tower show",
    ]
    for prompt in [*sets.source, *sets.target]:
        assert TOWER.subject in prompt and relation_views(prompt, TOWER.subject) is not None
    lower = EditRequest("the Beatles", "{} came from the city of", "Liverpool", "Paris")
    sets = build_prompt_sets(lower, ["The Beatles were formed in"], DistributionConfig())
    assert sets.paraphrases[1] == "the Beatles were formed in"


@pytest.mark.parametrize(
    "bad",
    [
        "Tourists visit the eiffel tower in",  # only the first letter may differ in case
        "Tourists visit THE EIFFEL TOWER in",
        "Tourists visit Eiffel Tower in",
        "Tourists visit othe Eiffel Tower in",  # not at a word start
    ],
)
def test_other_spellings_of_the_subject_are_still_refused(bad: str) -> None:
    with pytest.raises(DistributionError, match="does not mention the subject 'The Eiffel Tower'"):
        build_prompt_sets(TOWER, [bad], DistributionConfig())


@pytest.mark.parametrize("request_form", ["NFC", "NFD"])
@pytest.mark.parametrize("paraphrase_form", ["NFC", "NFD"])
def test_prompts_and_paraphrases_are_compared_in_nfc(
    request_form: str, paraphrase_form: str
) -> None:
    subject = unicodedata.normalize(request_form, "Zoë Saldaña")
    request = EditRequest(subject, unicodedata.normalize(request_form, "{} was born in"), "a", "b")
    paraphrases = [
        unicodedata.normalize(paraphrase_form, "The birthplace of Zoë Saldaña is"),
        unicodedata.normalize(paraphrase_form, "Señora {} grew up in"),
    ]
    sets = build_prompt_sets(request, paraphrases, DistributionConfig())
    nfc = unicodedata.normalize("NFC", "Zoë Saldaña")
    assert request.subject == nfc and request.text == f"{nfc} was born in"
    assert sets.paraphrases == [
        f"{nfc} was born in",
        f"The birthplace of {nfc} is",
        f"Señora {nfc} grew up in",
    ]
    assert all(p == unicodedata.normalize("NFC", p) for p in [*sets.source, *sets.target])


def test_a_lower_case_paraphrase_subject_fits_an_edit(tiny_model) -> None:
    edit = fit_edit(
        tiny_model, TOWER, ["Tourists visit the Eiffel Tower in the city of"], config=NO_VALIDATION
    )
    assert edit.prompts.paraphrases[1] == "Tourists visit The Eiffel Tower in the city of"


@pytest.mark.parametrize(
    ("command", "paraphrase", "message"),
    [
        ("edit", "{} is in {}", "2 '{}' placeholders"),
        ("edit", "Tourists visit Paris", "does not mention the subject"),
        ("sweep", "{} and {} stand in", "2 '{}' placeholders"),
        ("sweep", "Tourists visit Paris", "does not mention the subject"),
    ],
)
def test_cli_paraphrases_are_checked_before_the_model_loads(
    command: str, paraphrase: str, message: str, no_model, capsys, tmp_path: Path
) -> None:
    argv = [command, "--prompt", "{} is located in the city of", "--subject", "The Eiffel Tower"]
    argv += ["--old", "Paris", "--new", "Rome", "--paraphrase", paraphrase]
    argv += ["--out", str(tmp_path / "sweep")] if command == "sweep" else []
    assert main(argv) == 2
    assert message in one_error_line(capsys, command)


# ----------------------------------------------------------------------------- option ranges
@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command that loads a model fails the test if it gets that far."""

    def refuse(args: argparse.Namespace) -> None:
        raise AssertionError("the model was loaded although an argument is bad")

    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"sake_lens.cli.{name}")
        if hasattr(module, "load_from_args"):
            monkeypatch.setattr(module, "load_from_args", refuse)


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"sake-lens {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


EDIT = ["--prompt", "{} is located in the city of", "--subject", "Rome", "--old", "a", "--new", "b"]
REQUIRED = {
    "demo": [],
    "edit": EDIT,
    "eval": ["--data", "data.json"],
    "generate": ["The capital of Japan is"],
    "known-facts": ["--data", "data.json", "--out", "known.json"],
    "ripple-suite": ["--out", "suite.json"],
    "sweep": [*EDIT, "--out", "sweep"],
    "compare": ["run.json"],
}
OUT_OF_RANGE = [
    ("edit", "--n-paraphrases", "100000", "1 and <= 200", "200 or less"),
    ("edit", "--n-paraphrases", "0", "1 and <= 200", "1 or more"),
    ("edit", "--max-new-tokens", "0", "1 and <= 2048", "1 or more"),
    ("edit", "--seed", "-1", "0 and <= 4294967295", "0 or more"),
    ("demo", "--max-new-tokens", "5000", "1 and <= 2048", "2048 or less"),
    ("generate", "--max-new-tokens", "99999", "1 and <= 2048", "2048 or less"),
    ("eval", "--n", "0", "1 and <= 1000000", "1 or more"),
    ("eval", "--paraphrases", "201", "1 and <= 200", "200 or less"),
    ("eval", "--chunk-size", "0", "1 and <= 1024", "1 or more"),
    ("eval", "--batch-size", "100000", "1 and <= 4096", "4096 or less"),
    ("eval", "--seed", str(2**32), "0 and <= 4294967295", "4294967295 or less"),
    ("known-facts", "--n", "10000000", "1 and <= 1000000", "1000000 or less"),
    ("known-facts", "--batch-size", "0", "1 and <= 4096", "1 or more"),
    ("ripple-suite", "--seed", "-3", "0 and <= 4294967295", "0 or more"),
    ("ripple-suite", "--batch-size", "5000", "1 and <= 4096", "4096 or less"),
    ("sweep", "--n-paraphrases", "1000", "1 and <= 200", "200 or less"),
    ("sweep", "--n-held-out", "0", "1 and <= 200", "1 or more"),
    ("sweep", "--n-neighbours", "201", "1 and <= 200", "200 or less"),
    ("sweep", "--n-relation", "0", "1 and <= 200", "1 or more"),
    ("sweep", "--n-edits", "13", "1 and <= 12", "12 or less"),
    ("sweep", "--batch-size", "0", "1 and <= 4096", "1 or more"),
    ("sweep", "--seed", "-1", "0 and <= 4294967295", "0 or more"),
    ("compare", "--seed", "-1", "0 and <= 4294967295", "0 or more"),
]


@pytest.mark.parametrize(("command", "flag", "value", "bounds", "fix"), OUT_OF_RANGE)
def test_out_of_range_counts_exit_2_on_one_line_before_the_model_loads(
    command: str, flag: str, value: str, bounds: str, fix: str, no_model, capsys
) -> None:
    assert main([command, *REQUIRED[command], flag, value]) == 2
    err = one_error_line(capsys, command)
    assert f"{flag} {value} is out of range" in err and f">= {bounds}" in err
    assert f"pass {flag} {fix}." in err


@pytest.mark.parametrize("value", ["12.5", "ten", "", "1e3"])
def test_a_count_that_is_not_a_whole_number_is_one_line_too(value: str, no_model, capsys) -> None:
    assert main(["edit", *EDIT, "--n-paraphrases", value]) == 2
    err = one_error_line(capsys, "edit")
    assert f"--n-paraphrases {value!r} is not a whole number" in err and "1 to 200" in err


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by name, the edits actions included."""
    out: dict[str, argparse.ArgumentParser] = {}
    todo = [("", build_parser())]
    while todo:
        name, parser = todo.pop()
        out[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {n}".strip(), p) for n, p in action.choices.items()]
    return out


def test_every_integer_option_is_bounded_and_its_help_gives_the_range() -> None:
    bounded = 0
    for name, parser in _subparsers().items():
        for action in parser._actions:
            assert action.type is not int, f"sake-lens {name} {action.option_strings} is unbounded"
            if getattr(action.type, "__qualname__", "").startswith("bounded_int"):
                bounded += 1
                shown = re.search(r"\((\d+) to (\d+)\)$", action.help or "")
                assert shown, f"sake-lens {name} {action.option_strings}: no range in --help"
                lo, hi = int(shown.group(1)), int(shown.group(2))
                assert action.type(str(lo)) == lo and action.type(str(hi)) == hi
                assert action.default is None or lo <= action.default <= hi
    assert bounded == len({(c, f) for c, f, *_ in OUT_OF_RANGE})


def test_the_bounds_themselves_and_the_defaults_are_accepted() -> None:
    parser = build_parser()
    args = parser.parse_args(["edit", *EDIT, "--n-paraphrases", "200", "--max-new-tokens", "1"])
    assert (args.n_paraphrases, args.max_new_tokens, args.seed) == (200, 1, 0)
    args = parser.parse_args(["eval", "--data", "d.json", "--seed", str(2**32 - 1)])
    assert (args.n, args.paraphrases, args.chunk_size, args.batch_size) == (None, None, 8, 32)
    args = parser.parse_args(["sweep", *EDIT, "--out", "o", "--n-edits", "12"])
    assert args.n_edits == 12
    # The sweep's counts default to None on the command line: SweepConfig and EditConfig
    # (one place for each default) fill them in.
    args = parser.parse_args(["sweep", *EDIT, "--out", "o"])
    assert (args.n_paraphrases, args.n_held_out, args.n_neighbours, args.batch_size) == (
        None,
        None,
        None,
        None,
    )
    config = sweep_config_from_args(args)
    default = SweepConfig.default()
    assert (config.n_paraphrases, config.n_held_out, config.n_neighbours) == (
        default.n_paraphrases,
        default.n_held_out,
        default.n_neighbours,
    )
    assert edit_config_from_args(args).batch_size == EditConfig().batch_size
    assert parser.parse_args(["generate", "x"]).max_new_tokens == 20
    assert parser.parse_args(["demo"]).max_new_tokens == 6


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ("0-100000000", "layer 100000000 is out of range"),
        ("5,-5000", "layer -5000 is out of range"),
        ("12-5", "runs backwards; write it as '5-12'"),
        ("x", "use 'all' or numbers"),
    ],
)
def test_sweep_layers_are_checked_before_the_model_loads(
    layers: str, message: str, no_model, capsys
) -> None:
    assert main(["sweep", *REQUIRED["sweep"], "--layers", layers]) == 2
    assert message in one_error_line(capsys, "sweep")


# ----------------------------------------------------------------------------- sites
def test_bad_sites_in_an_edit_config_fail_before_any_forward(tiny_model) -> None:
    request = EditRequest("Rome", "{} is the capital of", "Italy", "France")
    with pytest.raises(SiteError, match=r"blocks\.1\.hook_resid_post"):  # the closest name
        fit_edit(tiny_model, request, config=EditConfig(site="blocks.1.hook_resid_pst"))
    with pytest.raises(SiteError, match=r"cannot steer|observation"):
        fit_edit(tiny_model, request, config=EditConfig(site="hook_pos_embed"))


# ----------------------------------------------------------------------------- numbers
def test_nan_in_activations_is_a_collection_error_naming_the_prompt(tiny_model) -> None:
    def poison(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        act[:, -1, 0] = float("nan")
        return act

    with pytest.raises(CollectionError) as err:
        collect_activations(
            tiny_model,
            ["hello world", "bye"],
            [SITE],
            extra_hooks=[("blocks.0.hook_resid_post", poison)],
        )
    msg = str(err.value)
    assert "Non-finite" in msg and "hello world" in msg and "float32" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", [GaussianMap, DiagonalMap, MeanShiftMap])
def test_non_finite_activations_in_maps_are_fit_errors(kind: type, bad: float) -> None:
    x = torch.randn(10, 6, dtype=torch.float64)
    y = x + 1
    y[3, 2] = bad
    with pytest.raises(FitError, match="3"):
        kind().fit(x, y)


@pytest.mark.parametrize("kind", [GaussianMap, DiagonalMap, MeanShiftMap])
def test_all_samples_identical_give_a_pure_translation(kind: type) -> None:
    x = torch.ones(7, 5, dtype=torch.float64)
    y = torch.full((9, 5), 3.0, dtype=torch.float64)
    m = kind().fit(x, y)
    probe = torch.randn(4, 5, dtype=torch.float64)
    assert torch.isfinite(m.transform(probe)).all()
    torch.testing.assert_close(m.transform(x), y[:7])


def test_an_edit_for_another_width_is_refused_when_steering(tiny_model) -> None:
    wide = fake_edit("Rome", d=576)  # a map fitted at d=576; the tiny model has d=64
    tokens = tokenize_batch(tiny_model, ["Rome is"]).tokens
    with pytest.raises(ModelMismatchError, match="d_model=576") as err:
        with steered(tiny_model, [wide]):
            tiny_model(tokens)
    assert "Fit the edit again" in str(err.value)
    assert all(not hp._forward_hooks for hp in tiny_model.hook_dict.values())


def test_float16_input_to_a_float64_map_keeps_its_dtype() -> None:
    m = GaussianMap().fit(torch.randn(20, 8), torch.randn(20, 8) + 2)
    h = torch.randn(3, 8).half()
    out = m.transform(h)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_a_float64_model_collects_fits_steers_and_generates(model) -> None:
    m64 = build_tiny_model(model.tokenizer)
    m64.to(torch.float64)
    request = EditRequest("Rome", "{} is the capital of", "Italy", "France")
    paraphrases = ["The city of {} is the capital of", "{}, the capital of"]
    edit = fit_edit(m64, request, paraphrases, config=NO_VALIDATION)
    tokens = tokenize_batch(m64, [request.text]).tokens
    base = m64(tokens)
    with steered(m64, [edit]):
        out = m64(tokens)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert not torch.equal(out, base)
    assert isinstance(generate(m64, [request.text], max_new_tokens=2)[0], str)


# ----------------------------------------------------------------------------- registries
@pytest.mark.parametrize("op", ["get", "remove", "enable", "disable", "scope", "revise"])
def test_every_registry_operation_on_a_missing_id_names_the_closest(op: str) -> None:
    book = fake_book(SUBJECTS[:2])
    missing = book.entries[0].id[:-1] + "x"  # a typo of an existing id
    args = ("German",) if op == "revise" else ()
    with pytest.raises(RegistryError) as err:
        getattr(book, op)(missing, *args)
    msg = str(err.value)
    assert missing in msg and book.entries[0].id in msg and "book.list()" in msg
    assert isinstance(err.value, KeyError)


def test_saved_registry_operations_on_a_missing_id(tmp_path: Path) -> None:
    book = fake_book(SUBJECTS[:2])
    book.save(tmp_path)
    before = (tmp_path / "registry.json").read_bytes()
    with pytest.raises(RegistryError, match="sake-lens edits list"):
        remove_saved(tmp_path, "no-such-edit")
    with pytest.raises(RegistryError, match=book.entries[1].id):
        set_saved_enabled(tmp_path, book.entries[1].id + "-", False)
    assert (tmp_path / "registry.json").read_bytes() == before  # nothing was rewritten
    with pytest.raises(RegistryError, match="No edit registry"):
        remove_saved(tmp_path / "nowhere", "x")
    with pytest.raises(RegistryError, match="No saved edit"):
        load_edit(tmp_path / "nowhere")


def test_adding_an_edit_for_another_model(tiny_model) -> None:
    book = EditBook(model=tiny_model, gate=FAKE_GATE, features=FakeFeatures())
    with pytest.raises(ModelMismatchError, match="d_model"):
        book.add(fake_edit("Rome", d=16))
    with pytest.raises(ModelMismatchError, match="strict=False"):
        book.add(fake_edit("Rome", d=64, model_id="gpt2"))


def test_loading_a_single_edit_into_the_wrong_model(tmp_path: Path, tiny_model) -> None:
    save_edit(fake_edit("Rome", d=576), tmp_path)
    with pytest.raises(ModelMismatchError, match="d_model=576"):
        load_edit(tmp_path, model=tiny_model)
    with pytest.raises(ModelMismatchError, match="d_model=576"):
        EditBook.load(tmp_path, model=tiny_model, features=FakeFeatures())


# ----------------------------------------------------------------------------- non-ASCII, RTL
@pytest.mark.slow
@pytest.mark.parametrize(
    ("subject", "template", "old", "new", "paraphrases"),
    [
        (
            "محمد عبده",
            "اللغة الأم لـ {} هي",
            "العربية",
            "الفرنسية",
            ["{} يتحدث", "لغة {} هي"],
        ),
        (
            "Zoë Ångström",
            "The mother tongue of {} is",
            "Swedish",
            "French",
            ["{} grew up speaking", "The first language of {} was"],
        ),
    ],
)
def test_non_ascii_and_right_to_left_edits_work_end_to_end(
    model, tmp_path: Path, subject: str, template: str, old: str, new: str, paraphrases: list[str]
) -> None:
    request = EditRequest(subject, template, old, new)
    edit = fit_edit(model, request, paraphrases, config=NO_VALIDATION)
    assert edit.request.subject == subject and subject in edit.prompts.source[0]
    tokens = tokenize_batch(model, [request.text]).tokens
    base = model(tokens)[:, -1]
    with steered(model, [edit]):
        out = model(tokens)[:, -1]
        text = generate(model, [request.text], max_new_tokens=3)[0]
    assert torch.isfinite(out).all() and not torch.equal(out, base) and isinstance(text, str)
    save_edit(edit, tmp_path)
    back = load_edit(tmp_path, model=model)
    assert back.request == request and back.id == edit.id
    x = torch.randn(2, 576, dtype=torch.float64)
    assert torch.equal(back.map.transform(x), edit.map.transform(x))
    raw = (tmp_path / "registry.json").read_text(encoding="utf-8")
    assert subject in raw  # stored as readable UTF-8, not escaped
