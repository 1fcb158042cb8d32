"""Loading through transformers' ``device_map`` (accelerate), and steering where the site is.

Models larger than one GPU are loaded with ``load_model(path, device_map=...)``; the edits'
parameters must follow the activations to whatever device holds the site. On the CPU machine
this runs the whole path with a CPU device map; the multi-GPU case runs where two GPUs exist.
"""

from __future__ import annotations

import pytest
import torch

from sake_lens import EditRequest, load_model
from sake_lens.model.loading import default_model_dir
from sake_lens.model.sites import FINAL_SITE
from sake_lens.model.tokens import set_bos_convention, tokenize_batch
from sake_lens.steer.edit import EditConfig, fit_edit
from sake_lens.steer.hooks import steered

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
PARAPHRASES = [
    "Danielle Darrieux's mother tongue is",
    "The native language of Danielle Darrieux is",
    "Danielle Darrieux grew up speaking",
    "The first language of Danielle Darrieux is",
]


def _load(model: object, device_map: object) -> object:
    path = default_model_dir()
    if not (path / "config.json").is_file():  # the session fixture writes the cache
        pytest.skip(f"no saved default checkpoint at {path}")
    bridge = load_model(str(path), device_map=device_map)
    set_bos_convention(bridge, False)  # SmolLM2 was trained without BOS
    return bridge


def _last_logits(model: object, prompts: list[str]) -> torch.Tensor:
    batch = tokenize_batch(model, prompts, prepend_bos=False)
    with torch.no_grad():
        return model(batch.tokens, attention_mask=batch.attention_mask)[:, -1].float().cpu()


def _steer_and_check(bridge: object) -> None:
    cfg = EditConfig(batch_size=8)
    edit = fit_edit(bridge, REQUEST, PARAPHRASES, config=cfg, progress=False)
    prompts = [REQUEST.text]
    before = _last_logits(bridge, prompts)
    seen: list[torch.device] = []

    def record(act: torch.Tensor, hook: object) -> None:
        seen.append(act.device)

    with steered(bridge, [edit]):
        with bridge.hooks(fwd_hooks=[(FINAL_SITE, record)]):
            after = _last_logits(bridge, prompts)
    assert torch.isfinite(after).all()
    assert (after - before).abs().max() > 1e-3, "the edit changed nothing"
    # The map's parameters were cast to the device and dtype of the site's activations.
    site_device = seen[-1]
    keys = list(edit.map._cache)
    assert any(dev == site_device for _, dev in keys), (keys, site_device)
    eng = bridge.tokenizer.encode(" English", add_special_tokens=False)[0]
    assert int(after.argmax(-1)[0]) == eng or after[0, eng] > before[0, eng]


@pytest.mark.slow
@pytest.mark.parametrize("device_map", [{"": "cpu"}, "cpu"])
def test_cpu_device_map_loads_fits_and_steers(
    model: object, device_map: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    seen: dict[str, object] = {}
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args: object, **kwargs: object) -> object:
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    bridge = _load(model, device_map)
    assert seen.get("device_map") == device_map  # handed to transformers (accelerate)
    assert next(bridge.original_model.parameters()).device.type == "cpu"
    # Same weights as the default load: identical logits on the same prompt.
    prompts = [REQUEST.text]
    torch.testing.assert_close(_last_logits(bridge, prompts), _last_logits(model, prompts))
    _steer_and_check(bridge)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_split_across_two_gpus_steers_on_the_site_device(model: object) -> None:
    n = int(model.cfg.n_layers)
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "lm_head": 0, "model.norm": 1}
    device_map.update({f"model.layers.{i}": (0 if i < n // 2 else 1) for i in range(n)})
    bridge = _load(model, device_map)
    _steer_and_check(bridge)
