"""Builders for tests: tiny random models, random activations, fitted edits without a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

#: The CounterFact development file: ``$SAKE_LENS_DATA``, else the repository's copy.
DEV_DATA = Path(
    os.environ.get(
        "SAKE_LENS_DATA",
        Path(__file__).resolve().parent.parent / "benchmarks/data/counterfact-dev.json",
    )
)


def build_tiny_model(tokenizer: Any, *, n_layers: int = 2, d_model: int = 64, seed: int = 0) -> Any:
    """A tiny random Llama booted as a TransformerBridge (no download, ~1 s)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    hf = LlamaForCausalLM(config).eval()
    bridge = TransformerBridge.boot_transformers(
        "tiny-llama", hf_model=hf, tokenizer=tokenizer, device="cpu", dtype=torch.float32
    )
    bridge.enable_compatibility_mode()
    bridge.eval()
    bridge.sake_lens_model_id = "tiny-llama"
    bridge.sake_lens_prepend_bos = False
    return bridge


def correlated_samples(n: int, d: int, *, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``n`` float64 samples in ``d`` dims with a random covariance and mean ``shift``."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift
