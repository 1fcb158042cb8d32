"""Clean errors for bad files and caches, found before the work; files that others can read.

The command-line side of each bad input is in the catalogue (tests/test_error_catalogue.py);
here the library calls: evaluation data and output files, the model cache (a regular file, not
writable, truncated, two processes building it at once), registry manifests, the modes of the
files atomic writers create, edit ids of non-ASCII subjects and the loaders' progress bars.
Random paraphrase lists and evaluation files (hypothesis) give a result or a clean error.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sake_lens.cli.main import main
from sake_lens.errors import (
    DataError,
    DistributionError,
    EditFileError,
    EditRequestError,
    ModelLoadError,
)
from sake_lens.evaluate import runner as runner_mod
from sake_lens.evaluate.data import load_records
from sake_lens.model import loading
from sake_lens.prompts.distributions import check_paraphrases
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import save_edit, storage

from .reliability_helpers import fake_edit, load_book

RECORD = {
    "case_id": "eiffel",
    "subject": "Eiffel Tower",
    "prompt": "The Eiffel Tower is located in the city of",
    "ground_truth": "Paris",
    "target_new": "Rome",
    "rephrase_prompt": "Where is the Eiffel Tower? It is in the city of",
    "locality_prompt": "The Louvre is located in the city of",
    "locality_ground_truth": "Paris",
}
FORK = mp.get_context("fork")


# ----------------------------------------------------------------------------- evaluation files
@pytest.mark.parametrize(
    "data", [b"\xff\xfe\x00\x01", b'[{"case_id": "caf\xe9"}]', b"\x89PNG\r\n\x1a\n\x00\x00"]
)
def test_evaluation_data_that_is_not_utf8_is_a_data_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(data)
    with pytest.raises(DataError, match="not UTF-8 text") as err:
        load_records(path)
    assert "pass a UTF-8 JSON file" in str(err.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b"not json", "not JSON"),
    ],
)
def test_an_unreadable_output_file_is_a_data_error(
    tmp_path: Path, content: bytes, match: str
) -> None:
    out = tmp_path / "run.json"
    out.write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        runner_mod._read_previous(out, "hash")
    assert "choose another --out" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n\t"])
def test_an_empty_output_file_is_a_fresh_output(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "run.json"  # what `mktemp` makes
    out.write_bytes(content)
    assert runner_mod._read_previous(out, "hash") is None


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([RECORD]), encoding="utf-8")
    return path


class ModelReached(Exception):
    """Raised instead of loading the model: every check before it passed."""


@pytest.fixture
def model_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    from sake_lens.cli import eval as eval_cli

    def reached(args: Any) -> None:
        raise ModelReached

    monkeypatch.setattr(eval_cli, "load_from_args", reached)


@pytest.mark.parametrize("make", ["binary", "list", "under a file"])
def test_eval_out_is_checked_before_the_model_loads(
    data_file: Path, tmp_path: Path, make: str, model_reached: None, capsys
) -> None:
    out = tmp_path / "run.json"
    if make == "binary":
        out.write_bytes(b"\x00\xff\xfe")
    elif make == "list":
        out.write_text("[]", encoding="utf-8")
    else:
        (tmp_path / "file").write_text("x", encoding="utf-8")
        out = tmp_path / "file" / "run.json"
    assert main(["eval", "--data", str(data_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "Traceback" not in err


def test_eval_with_an_empty_out_file_goes_on_to_the_model(
    data_file: Path, tmp_path: Path, model_reached: None
) -> None:
    out = tmp_path / "run.json"
    out.touch()
    with pytest.raises(ModelReached):
        main(["eval", "--data", str(data_file), "--out", str(out)])


def test_eval_with_fewer_records_than_a_chunk_writes_the_file_before_scoring(
    tiny_model, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output exists (complete: false, baseline written) before the first chunk is scored."""
    out = tmp_path / "run.json"
    seen: list[dict[str, Any]] = []

    def evaluate_chunk(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        seen.append(json.loads(out.read_text(encoding="utf-8")))
        raise KeyboardInterrupt  # stop the run here, as a user would

    monkeypatch.setattr(runner_mod, "_evaluate_chunk", evaluate_chunk)
    config = runner_mod.EvalConfig(
        data=str(data_file), method="none", chunk_size=8, generation=False, n_boot=10
    )
    with pytest.raises(KeyboardInterrupt):
        runner_mod.run_evaluation(tiny_model, config, out=out, progress=False)
    assert len(seen) == 1 and seen[0]["complete"] is False and seen[0]["baseline"] is not None


# ----------------------------------------------------------------------------- the model cache
@pytest.fixture
def no_dequantising(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the (slow) dequantisation of the default model starts."""
    import transformers

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was dequantised although the cache is not writable")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


@pytest.mark.parametrize("where", ["a regular file", "below a regular file"])
def test_a_cache_that_is_a_file_is_refused_before_dequantising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dequantising: None, where: str
) -> None:
    (tmp_path / "cache").write_text("x", encoding="utf-8")
    cache = tmp_path / "cache" if where == "a regular file" else tmp_path / "cache" / "sub"
    monkeypatch.setenv("SAKE_LENS_CACHE", str(cache))
    with pytest.raises(ModelLoadError, match="is a regular file, not a folder") as err:
        loading.load_model(device="cpu")
    assert "Point SAKE_LENS_CACHE at a writable folder" in str(err.value)


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into (a read-only mount, or one without w bits)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.mkdir()
    except OSError:
        return folder
    probe.rmdir()  # root ignores the mode bits: use a read-only mount instead
    for candidate in (Path("/sys/sake-lens-cache"), Path("/proc/sake-lens-cache")):
        try:
            candidate.mkdir(parents=True)
        except OSError:
            return candidate
        candidate.rmdir()
    pytest.skip("no unwritable folder to test with")


def test_a_read_only_cache_is_refused_before_dequantising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dequantising: None
) -> None:
    monkeypatch.setenv("SAKE_LENS_CACHE", str(_unwritable_folder(tmp_path)))
    try:
        with pytest.raises(ModelLoadError, match="Cannot write the model cache") as err:
            loading.load_model(device="cpu")
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert "Point SAKE_LENS_CACHE at a writable folder" in str(err.value)


def _cache_copy(tmp_path: Path, model_bytes: bytes | None = None) -> Path:
    """A cache under ``tmp_path`` linking to the real one, with its own model.safetensors."""
    real = loading.default_model_dir()
    if not (real / "model.safetensors").is_file():
        pytest.skip("the default model's cache is not built")
    target = tmp_path / "cache" / "models" / real.name
    target.mkdir(parents=True)
    for file in real.iterdir():
        if file.name != "model.safetensors":
            (target / file.name).symlink_to(file)
    if model_bytes is not None:
        (target / "model.safetensors").write_bytes(model_bytes)
    return target


@pytest.mark.parametrize("keep", [0, 5, 1 << 16, 1 << 20])
def test_a_truncated_cached_model_names_the_folder_to_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: int
) -> None:
    with (loading.default_model_dir() / "model.safetensors").open("rb") as f:
        head = f.read(keep)
    target = _cache_copy(tmp_path, head)
    monkeypatch.setenv("SAKE_LENS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError) as err:
        loading.load_model(device="cpu")
    msg = str(err.value)
    assert f"Delete the folder {target} and load again" in msg and "is damaged" in msg


def test_a_manifest_entry_with_text_for_bytes_is_not_called_truncated(tmp_path: Path) -> None:
    save_edit(fake_edit("Rome"), tmp_path)
    manifest = json.loads((tmp_path / storage.MANIFEST).read_text(encoding="utf-8"))
    manifest["entries"][0]["bytes"] = "abc"
    (tmp_path / storage.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(EditFileError) as err:
        load_book(tmp_path)
    msg = str(err.value)
    assert '"bytes": "abc"' in msg and "truncated" not in msg
    assert "sake-lens edits remove" in msg


# ----------------------------------------------------------------------------- concurrent builds
def _fake_build(folder: Path) -> None:
    """Stands in for dequantising: slow, and each process writes its own bytes."""
    time.sleep(0.5)
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_text(str(os.getpid()), encoding="utf-8")


def _build_in_child(target: str, start: Any, conn: Any) -> None:
    try:
        start.wait(10)
        loading._write_default_cache(Path(target))
        time.sleep(0.2)  # the other process finishes meanwhile; our cache must stay whole
        conn.send(("ok", (Path(target) / "model.safetensors").read_text(encoding="utf-8")))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("SAKE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "_build_default_checkpoint", _fake_build)
    monkeypatch.setattr(loading, "_find_default_gguf", lambda: Path("model.gguf"))
    yield loading.default_model_dir()


def _run_two(target: Path) -> list[str]:
    start = FORK.Event()
    pipes, procs = [], []
    for _ in range(2):
        parent, child = FORK.Pipe(duplex=False)
        proc = FORK.Process(target=_build_in_child, args=(str(target), start, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    start.set()
    results = [p.recv() if p.poll(60) else ("error", "no answer") for p in pipes]
    for proc in procs:
        proc.join(10)
    assert all(kind == "ok" for kind, _ in results), results
    return [text for _, text in results]


@pytest.mark.parametrize("lock", [True, False], ids=["with the lock", "without a lock"])
def test_two_processes_building_the_cache_at_once_share_one_whole_cache(
    fake_builds: Path, monkeypatch: pytest.MonkeyPatch, lock: bool
) -> None:
    """Without a lock (a file system without flock) both build; the first rename wins."""
    import contextlib

    if not lock:
        monkeypatch.setattr(loading, "_cache_lock", lambda target: contextlib.nullcontext())
    target = fake_builds
    target.parent.mkdir(parents=True)
    if lock:
        (target / "partial").mkdir(parents=True)  # an interrupted build from earlier: replaced
    seen = _run_two(target)
    assert seen[0] == seen[1] == (target / "model.safetensors").read_text(encoding="utf-8")
    assert loading._cache_is_complete(target) and not (target / "partial").exists()
    left = sorted(p.name for p in target.parent.iterdir())
    assert left in ([target.name], [target.name, target.name + ".lock"]), left


def test_the_cache_folder_gets_a_new_folders_mode(fake_builds: Path) -> None:
    with umask(0o022):
        loading._write_default_cache(fake_builds)
    assert fake_builds.stat().st_mode & 0o777 == 0o755


# ----------------------------------------------------------------------------- file modes
class umask:
    def __init__(self, mask: int) -> None:
        self.mask = mask

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)


def _writers(tmp_path: Path) -> dict[str, Any]:
    from sake_lens.analysis import compare, publish
    from sake_lens.evaluate.known_facts import write_known_facts
    from sake_lens.prompts.llm import ResponseCache

    def llm_cache() -> Path:
        cache = ResponseCache(tmp_path / "llm")
        cache.put({"q": 1}, "a")
        return next((tmp_path / "llm").rglob("*.json"))

    return {
        "registry file": lambda: (
            storage.atomic_write(tmp_path / "r.json", b"{}") or tmp_path / "r.json"
        ),
        "docs page": lambda: publish._atomic_write(tmp_path / "p.md", "x") or tmp_path / "p.md",
        "comparison": lambda: compare._atomic_write_text(tmp_path / "c.json", "{}"),
        "known facts": lambda: write_known_facts({}, tmp_path / "k.json"),
        "LLM cache entry": llm_cache,
    }


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
@pytest.mark.parametrize(
    "writer", ["registry file", "docs page", "comparison", "known facts", "LLM cache entry"]
)
def test_atomic_writers_honour_the_umask(tmp_path: Path, writer: str, mask: int, mode: int) -> None:
    with umask(mask):
        path = _writers(tmp_path)[writer]()
    assert Path(path).stat().st_mode & 0o777 == mode


def test_a_saved_registry_is_readable_by_others(tmp_path: Path) -> None:
    with umask(0o022):
        save_edit(fake_edit("Rome"), tmp_path / "reg")
    files = [p for p in (tmp_path / "reg").rglob("*") if p.is_file() and p.name != ".lock"]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)


# ----------------------------------------------------------------------------- edit ids
@pytest.mark.parametrize(
    ("subject", "start"),
    [
        ("Zoë Saldaña", "zoe-saldana-"),
        ("Antonín Dvořák", "antonin-dvorak-"),
        ("İstanbul", "istanbul-"),
        ("Straße", "strasse-"),
        ("東京", "東京-"),
        ("Москва", "москва-"),
        ("Danielle Darrieux", "danielle-darrieux-"),
    ],
)
def test_edit_ids_keep_the_letters_of_the_subject(subject: str, start: str) -> None:
    assert fake_edit(subject).id.startswith(start)


# ----------------------------------------------------------------------------- progress bars
def test_loading_the_sentence_embedder_draws_no_progress_bar(capfd) -> None:
    from transformers.utils import logging as hf_logging

    from sake_lens.gate.embedder import SentenceEmbedder

    assert hf_logging.is_progress_bar_enabled()
    assert SentenceEmbedder().dim > 0  # a fresh instance loads the weights again
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert hf_logging.is_progress_bar_enabled()  # the setting is restored afterwards


def test_progress_bars_stay_off_when_they_were_off() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        with loading.hf_progress_bars_off():
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


# ----------------------------------------------------------------------------- hypothesis
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
REQUEST = EditRequest("Eiffel Tower", "The {} is located in the city of", "Paris", "Rome")
PARAPHRASE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["{}", "{} {}", "Eiffel Tower", "eiffel tower is in", "{} is in", " ", ""]),
    st.builds(
        lambda a, b: f"{a}{{}}{b}", st.text(max_size=15), st.text(max_size=15)
    ),  # one placeholder
    st.builds(lambda a, b: f"{a}Eiffel Tower{b}", st.text(max_size=15), st.text(max_size=15)),
    st.none(),
    st.integers(),
)


@SETTINGS
@given(st.lists(PARAPHRASE, max_size=5))
def test_random_paraphrase_lists_check_or_raise_the_documented_error(
    paraphrases: list[Any],
) -> None:
    try:
        checked = check_paraphrases(REQUEST, paraphrases)
    except (DistributionError, EditRequestError) as exc:
        assert str(exc) and "\x00" not in str(exc)
        return
    assert len(checked) == len(paraphrases)
    for p in checked:
        assert isinstance(p, str) and p.strip() and "Eiffel Tower" in REQUEST.fill(p)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from sake_lens.cli.main import _COMMAND_MODULES

    def reached(args: Any) -> None:
        raise ModelReached

    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"sake_lens.cli.{name}")
        if hasattr(module, "load_from_args"):
            monkeypatch.setattr(module, "load_from_args", reached)


@SETTINGS
@given(
    paraphrases=st.lists(st.text(max_size=30).filter(lambda t: not t.startswith("-")), max_size=3)
)
def test_random_cli_paraphrases_fail_on_one_line_or_reach_the_model(
    paraphrases: list[str], no_model: None, capsys
) -> None:
    argv = ["edit", "--prompt", REQUEST.prompt, "--subject", REQUEST.subject]
    argv += ["--old", "Paris", "--new", "Rome"]
    for p in paraphrases:
        argv += ["--paraphrase", p]
    capsys.readouterr()
    try:
        code = main(argv)
    except ModelReached:
        check_paraphrases(REQUEST, paraphrases)  # accepted: they really are fine
        return
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("sake-lens edit: error: ")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={k: st.one_of(st.just(v), JSON) for k, v in RECORD.items()},
)
CONTENT = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.lists(FIELDS, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.lists(st.one_of(FIELDS, JSON), max_size=3).map(
        lambda v: "\n".join(json.dumps(x) for x in v).encode()
    ),
    st.text(max_size=100).map(str.encode),
)


@SETTINGS
@given(content=CONTENT, suffix=st.sampled_from([".json", ".jsonl", ".yaml"]))
def test_random_evaluation_files_give_records_or_a_data_error(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    try:
        loaded = load_records(path)
    except DataError as exc:
        assert str(exc)
        return
    assert all(r.case_id and r.request.subject for r in loaded.records)
    assert all(isinstance(e, str) and e for e in loaded.errors)


@SETTINGS
@given(content=CONTENT, suffix=st.sampled_from([".json", ".jsonl", ".yaml"]))
# A lone surrogate in a field the message quotes once made printing the error raise.
@example(
    content=b'[{"subject": "X", "target_new": "Rome", "case_id": "\\ud800\\udc00"}]', suffix=".json"
)
@example(content=b'[{"subject": "X", "target_new": "Rome", "case_id": "\\ud800"}]', suffix=".yaml")
def test_random_evaluation_files_on_the_cli_fail_on_one_line_or_reach_the_model(
    tmp_path: Path, content: bytes, suffix: str, no_model: None, capsys
) -> None:
    """No file is a silent no-op: a file without a valid record stops before the model."""
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    capsys.readouterr()
    try:
        code = main(["eval", "--data", str(path), "--method", "none"])
    except ModelReached:
        assert load_records(path).records  # reached the model with work to do
        return
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("sake-lens eval: error: ")
    assert "Traceback" not in err
