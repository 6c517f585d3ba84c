"""Shared fixtures: the repository root and a tiny randomly initialised model with the SmolLM2 tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Nothing in the tests may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A saved tiny-random model directory (about 10 MB), built once per test session."""
    from weakalign.models import TINY, load_model, load_tokenizer
    from weakalign.saved_models import save_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    save_model(load_model(TINY, seed=0), load_tokenizer(TINY), out)
    return out
