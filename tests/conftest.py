"""Shared fixtures: the real default model (once per session), a tiny random model, seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from .helpers import build_tiny_model


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def model():
    """The real default model, SmolLM2-135M-Instruct (loaded once per test session)."""
    from sake_lens import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def tiny_model(model):
    """A tiny random Llama (2 layers, d_model 64) with the default model's tokenizer."""
    return build_tiny_model(model.tokenizer)


def pytest_configure(config: pytest.Config) -> None:
    # Two cores are shared by the whole machine; one torch thread avoids oversubscription.
    if os.environ.get("SAKE_LENS_TEST_THREADS"):
        torch.set_num_threads(int(os.environ["SAKE_LENS_TEST_THREADS"]))
