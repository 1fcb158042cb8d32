"""Bad inputs give the documented error, naming the problem and the fix; odd but valid input works.

Complements tests/test_request.py (request fields), tests/test_sites_and_collection.py (unknown
and observation-only sites, empty prompts in collection, over-long prompts) and
tests/test_transport_errors.py (one sample, NaN rows, shapes): here the same problems reach the
public entry points (generation, steering, fitting, registries) and the real model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sake_lens.collect.activations import collect_activations
from sake_lens.errors import (
    CollectionError,
    EditRequestError,
    FitError,
    ModelMismatchError,
    RegistryError,
    SakeLensError,
    SiteError,
)
from sake_lens.model.tokens import check_prompts, tokenize_batch
from sake_lens.prompts.distributions import DistributionConfig
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
