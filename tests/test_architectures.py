"""Every common decoder architecture through the TransformerBridge, on tiny random models.

Seven families — GPT-2, GPT-NeoX (Pythia), Llama, Mistral, Qwen2, Gemma 2, Gemma 3 — are built
from transformers configs with random weights (2 layers, d_model 64; no download) and the
default model's tokenizer, booted the way :func:`sake_lens.load_model` boots a model, and put
through sake_lens: sites offered and validated, an edit fitted, steering at the final stream and
at a mid residual, KV-cached generation equal to uncached under steering, a save/load round
trip, and the TransformerLens patches each family needs.

``MATRIX`` lists the families and the patches each needs; every column of the table in
docs/architectures.md is a test below, parametrised over ``MATRIX`` (a family that fails one
fails the suite, and the patch column is proven in both directions). The page shows ``MATRIX``
as that table, which ``python -m tests.test_architectures`` rewrites; a test fails when the two
differ.

Random weights never say the old or the new object, so the edits are fitted without target
validation (``validate_targets=False``): the map is fitted all the same, from the same prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from sake_lens import DistributionConfig, EditConfig, EditRequest, fit_edit, steered
from sake_lens.errors import SiteError
from sake_lens.model.sites import (
    FINAL_SITE,
    UNEMBED_INPUT,
    keep_last_positions,
    offered_sites,
    resolve_site,
)
from sake_lens.model.tokens import set_bos_convention, tokenize_batch
from sake_lens.registry import load_edit, save_edit
from sake_lens.steer.edit import Edit
from sake_lens.steer.generation import generate, kv_cache_is_correct

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architectures.md"
START = "<!-- architecture-matrix:start (generated from tests/test_architectures.py) -->"
END = "<!-- architecture-matrix:end -->"

N_LAYERS, D_MODEL = 2, 64
MID_SITE = "blocks.0.hook_resid_post"
KV_PATCH = "patch_bridge_kv_cache"
COLUMNS = ("sites", "fit", "steer final", "steer mid", "KV cache", "save/load")
REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
PARAPHRASES = ["{} grew up speaking", "The first language of {} was", "As a child, {} spoke"]
PROMPTS = ["The mother tongue of Danielle Darrieux is", "Danielle Darrieux grew up speaking"]
#: Prompt plus new tokens (10 + 10) run past the sliding window of Mistral and Gemma (16).
GENERATE: dict[str, Any] = {"max_new_tokens": 10, "stop_at_eos": False, "return_tokens": True}


@dataclass(frozen=True)
class Family:
    """One architecture: its transformers classes, its tiny config and what sake_lens proves."""

    name: str
    model_class: str
    config_class: str
    config: dict[str, Any]
    #: The TransformerLens patches (in sake_lens.model.patches) the family needs.
    patches: tuple[str, ...]


_LLAMA_LIKE = {
    "hidden_size": D_MODEL,
    "intermediate_size": 2 * D_MODEL,
    "num_hidden_layers": N_LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}

MATRIX = (
    Family(
        "GPT-2",
        "GPT2LMHeadModel",
        "GPT2Config",
        {"n_embd": D_MODEL, "n_layer": N_LAYERS, "n_head": 4, "n_positions": 256},
        (KV_PATCH,),
    ),
    Family(
        "GPT-NeoX / Pythia",
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        {
            "hidden_size": D_MODEL,
            "intermediate_size": 2 * D_MODEL,
            "num_hidden_layers": N_LAYERS,
            "num_attention_heads": 4,
            "max_position_embeddings": 256,
            "rotary_pct": 0.25,
        },
        (),
    ),
    Family("Llama", "LlamaForCausalLM", "LlamaConfig", _LLAMA_LIKE, (KV_PATCH,)),
    Family(
        "Mistral",
        "MistralForCausalLM",
        "MistralConfig",
        {**_LLAMA_LIKE, "sliding_window": 16},
        (KV_PATCH,),
    ),
    Family("Qwen2", "Qwen2ForCausalLM", "Qwen2Config", _LLAMA_LIKE, (KV_PATCH,)),
    Family(
        "Gemma 2",
        "Gemma2ForCausalLM",
        "Gemma2Config",
        {**_LLAMA_LIKE, "head_dim": 16, "sliding_window": 16},
        (KV_PATCH,),
    ),
    Family(
        "Gemma 3",
        "Gemma3ForCausalLM",
        "Gemma3TextConfig",
        {**_LLAMA_LIKE, "head_dim": 16, "sliding_window": 16},
        (KV_PATCH,),
    ),
)
BY_NAME = {f.name: f for f in MATRIX}


def _ids(family: Family) -> str:
    return family.name


# ----------------------------------------------------------------------------- the docs table
def _config_text(family: Family) -> str:
    return ", ".join(f"{k}={v}" for k, v in family.config.items())


def render_table(matrix: tuple[Family, ...] = MATRIX) -> str:
    """The markdown table of docs/architectures.md: one row per family."""
    header = ["family", "transformers class", *COLUMNS, "patch"]
    lines = [
        START,
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for f in matrix:
        cells = ["yes"] * len(COLUMNS)  # each column is a test over every family
        patch = ", ".join(f"`{p}`" for p in f.patches) or "none"
        lines.append(f"| {f.name} | `{f.model_class}` | " + " | ".join([*cells, patch]) + " |")
    lines += ["", END]
    return "\n".join(lines)


def documented_table(page: Path = PAGE) -> str:
    text = page.read_text(encoding="utf-8")
    assert START in text and END in text, f"{page} lacks the markers {START!r} / {END!r}"
    return text[text.index(START) : text.index(END) + len(END)]


def write_table(page: Path = PAGE) -> None:
    text = page.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    page.write_text(text[:start] + render_table() + text[end:], encoding="utf-8")


def test_the_docs_table_is_the_matrix() -> None:
    assert documented_table() == render_table(), (
        "docs/architectures.md and MATRIX in tests/test_architectures.py differ; run "
        "`python -m tests.test_architectures` to rewrite the table"
    )


def test_the_table_renders_each_family_once(tmp_path: Path) -> None:
    assert len(BY_NAME) == len(MATRIX) == 7
    assert all(set(f.patches) <= {KV_PATCH} for f in MATRIX)  # the patches the tests prove
    page = tmp_path / "page.md"
    page.write_text(f"# A\n\n{START}\nold\n{END}\n\nafter\n", encoding="utf-8")
    write_table(page)
    table = documented_table(page)
    assert table == render_table() and page.read_text().endswith("\n\nafter\n")
    assert table.count("\n| ") == len(MATRIX) + 2  # header, rule, one row per family


# ----------------------------------------------------------------------------- the models
@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The default model's tokenizer, read from its cache (built first when missing)."""
    from transformers import AutoTokenizer

    from sake_lens.model.loading import default_model_dir, hf_progress_bars_off, load_model

    folder = default_model_dir()
    if not (folder / "tokenizer.json").is_file():
        load_model(device="cpu")  # writes the cache, tokenizer included
    with hf_progress_bars_off():
        return AutoTokenizer.from_pretrained(folder)


def build_bridge(family: Family, tokenizer: Any) -> Any:
    """A tiny random model of ``family`` booted as :func:`sake_lens.load_model` boots one."""
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    from sake_lens.model.patches import apply_bridge_patches

    torch.manual_seed(0)
    config = getattr(transformers, family.config_class)(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **family.config,
    )
    config.architectures = [family.model_class]
    hf = getattr(transformers, family.model_class)(config).eval()
    apply_bridge_patches()
    name = "tiny-" + family.model_class.removesuffix("ForCausalLM").lower()
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf, tokenizer=tokenizer, device="cpu", dtype=torch.float32
    )
    bridge.enable_compatibility_mode()
    bridge.eval()
    bridge.sake_lens_model_id = name
    set_bos_convention(bridge, False)
    return bridge


@dataclass
class Built:
    """A family's model and its two edits (fitted once per module)."""

    model: Any
    final: Edit
    mid: Edit


@pytest.fixture(scope="module")
def built(tokenizer: Any) -> Iterator[Callable[[Family], Built]]:
    cache: dict[str, Built] = {}

    def get(family: Family) -> Built:
        if family.name not in cache:
            model = build_bridge(family, tokenizer)
            dist = DistributionConfig(validate_targets=False)
            # The final edit carries the object through generation (continuation maps, the
            # default); the mid edit steers every generated token.
            final = fit_edit(
                model, REQUEST, PARAPHRASES, config=EditConfig(distributions=dist), progress=False
            )
            mid_config = EditConfig(site=MID_SITE, generation="generated", distributions=dist)
            mid = fit_edit(model, REQUEST, PARAPHRASES, config=mid_config, progress=False)
            cache[family.name] = Built(model, final, mid)
        return cache[family.name]

    yield get


@torch.no_grad()
def _logits(model: Any, edits: list[Edit]) -> torch.Tensor:
    batch = tokenize_batch(model, PROMPTS)
    with steered(model, edits):
        return model(batch.tokens, attention_mask=batch.attention_mask).float()


# ----------------------------------------------------------------------------- the proofs
@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_sites_are_offered_and_validated(family: Family, built: Callable[[Family], Built]) -> None:
    model = built(family).model
    sites = offered_sites(model)
    assert sites == [FINAL_SITE] + [f"blocks.{i}.hook_resid_post" for i in range(N_LAYERS)]
    for hook in sites:  # each steers: its write through the steering hook reaches the logits
        assert resolve_site(model, hook).hook == hook
    with pytest.raises(SiteError, match="depends only on that token"):
        resolve_site(model, "hook_embed")
    with pytest.raises(SiteError, match=f"layers 0..{N_LAYERS - 1}"):
        resolve_site(model, f"blocks.{N_LAYERS}.hook_resid_post")


@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_an_edit_is_fitted(family: Family, built: Callable[[Family], Built]) -> None:
    b = built(family)
    for edit, site in ((b.final, FINAL_SITE), (b.mid, MID_SITE)):
        assert edit.site.hook == site and edit.d_model == D_MODEL
        assert edit.map.is_fitted and edit.map.kind == "gaussian"
        assert edit.n_source == edit.n_target == 2 * (len(PARAPHRASES) + 1)
    assert b.final.object_ids == tuple(
        b.model.tokenizer.encode(" English", add_special_tokens=False)
    )


@pytest.mark.parametrize(
    ("family", "which"),
    [(f, w) for f in MATRIX for w in ("final", "mid")],
    ids=lambda x: x.name if isinstance(x, Family) else x,
)
def test_steering_changes_the_next_token_logits(
    family: Family, which: str, built: Callable[[Family], Built]
) -> None:
    """The last position's logits move; earlier positions do not (the edit writes only there)."""
    b = built(family)
    base = _logits(b.model, [])
    moved = _logits(b.model, [getattr(b, which)])
    assert torch.equal(moved[:, :-1], base[:, :-1])
    change = (moved[:, -1] - base[:, -1]).abs().amax(-1)  # per prompt
    assert bool((change > 1e-3 * base[:, -1].abs().amax(-1).clamp_min(1.0)).all()), change


@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_kv_cached_generation_equals_uncached_under_steering(
    family: Family, built: Callable[[Family], Built]
) -> None:
    b = built(family)
    assert kv_cache_is_correct(b.model, refresh=True)  # else generate() would not cache
    for edits in ([b.final], [b.mid], [b.final, b.mid]):
        with steered(b.model, edits):
            cached = generate(b.model, PROMPTS, **GENERATE)
            full = generate(b.model, PROMPTS, use_kv_cache=False, **GENERATE)
        assert cached == full and all(len(t) == GENERATE["max_new_tokens"] for t in cached)


@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_saved_edits_load_and_steer_bit_for_bit(
    family: Family, built: Callable[[Family], Built], tmp_path: Path
) -> None:
    b = built(family)
    for edit in (b.final, b.mid):
        folder = save_edit(edit, tmp_path / edit.site.hook)
        loaded = load_edit(folder, model=b.model)
        assert loaded.site == edit.site and len(loaded.continuation) == len(edit.continuation)
        assert torch.equal(_logits(b.model, [loaded]), _logits(b.model, [edit]))


@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_the_named_patches_are_needed(
    family: Family, built: Callable[[Family], Built], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``patch_bridge_kv_cache`` cached decoding is wrong exactly where it is named."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    from sake_lens.steer import generation

    model = built(family).model
    original = getattr(AttentionBridge._update_kv_cache, "__wrapped__", None)
    assert original is not None, "sake_lens's KV-cache patch is not installed"
    monkeypatch.setattr(AttentionBridge, "_update_kv_cache", original)
    monkeypatch.setattr(generation, "apply_bridge_patches", lambda: None)
    try:
        unpatched = kv_cache_is_correct(model, refresh=True)
    finally:
        monkeypatch.undo()
    assert kv_cache_is_correct(model, refresh=True)
    assert unpatched == (KV_PATCH not in family.patches), (
        f"{family.name}: cached decoding without {KV_PATCH} is "
        f"{'right' if unpatched else 'wrong'}; update MATRIX and docs/architectures.md"
    )


@pytest.mark.parametrize("family", MATRIX, ids=_ids)
def test_last_position_logits_are_cut_before_the_unembedding(
    family: Family, built: Callable[[Family], Built]
) -> None:
    """Passes that read the last positions' logits cut the stream at ``unembed.hook_in``:
    the logits equal an uncut pass's, on every family (at ``ln_final.hook_out`` GPT-2 fails,
    as it reshapes the final norm's output to the input's length)."""
    model = built(family).model
    batch = tokenize_batch(model, PROMPTS)
    with torch.no_grad():
        full = model(batch.tokens, attention_mask=batch.attention_mask)
        hooks = keep_last_positions(model, 2)
        assert [name for name, _ in hooks] == [UNEMBED_INPUT]
        with model.hooks(fwd_hooks=hooks):
            cut = model(batch.tokens, attention_mask=batch.attention_mask)
    assert cut.shape[1] == 2
    torch.testing.assert_close(cut, full[:, -2:], rtol=1e-5, atol=1e-5)


def test_gpt2_cannot_be_cut_at_the_final_norm(built: Callable[[Family], Built]) -> None:
    """Why the cut is not at ``ln_final.hook_out``: GPT-2 reshapes what follows it."""
    model = built(BY_NAME["GPT-2"]).model
    tokens = tokenize_batch(model, PROMPTS[:1]).tokens
    with pytest.raises(RuntimeError, match="invalid for input"), torch.no_grad():
        with model.hooks(fwd_hooks=[(FINAL_SITE, lambda act, hook: act[:, -1:, :])]):
            model(tokens)


def test_families_differ_in_what_they_build(built: Callable[[Family], Built]) -> None:
    """Each family boots its own architecture (the bridge did not fall back to one class)."""
    classes = {type(built(f).model.original_model).__name__ for f in MATRIX}
    assert classes == {f.model_class for f in MATRIX}
    for f in MATRIX:
        cfg = built(f).model.cfg
        assert (int(cfg.n_layers), int(cfg.d_model)) == (N_LAYERS, D_MODEL), f.name


if __name__ == "__main__":  # rewrite the table in docs/architectures.md from MATRIX
    write_table()
    print(f"wrote {len(MATRIX)} families to {PAGE.relative_to(ROOT)}")
