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
# Under pytest-xdist (`make test`: two workers on two cores) each worker and the stages it runs use one thread:
# two workers of two threads each would spin-wait for each other's cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    # Here, not in pyproject.toml: that file is part of the pipeline's code digest (weakalign.fingerprint).
    config.addinivalue_line("markers", "whole_run: runs a whole pipeline of its own (1-4 minutes): collected first")


def pytest_collection_modifyitems(items):
    """Whole pipeline runs first: the tiny run's group (`tiny_run`, tests/test_pipeline.py), then each test marked
    `whole_run`; the order is otherwise kept. pytest-xdist hands tests to whichever worker is free in collection
    order, so long runs collected late ran at the end on one worker while the other had nothing left (one run of
    `make test`: 535 s against 474 s). First, they spread over both workers and the short tests fill in the end."""
    def rank(item):
        group = item.get_closest_marker("xdist_group")
        return 0 if group and group.args == ("tiny_run",) else 1 if item.get_closest_marker("whole_run") else 2
    items.sort(key=rank)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shipped():
    """`shipped({"train_weak": {"model": "base@layers=8"}})`: params.yaml (the one home of the defaults) with
    nested changes on top, validated as a run would read it."""
    from weakalign.config.params import load_params

    return lambda changes=None: load_params(ROOT / "params.yaml", changes)


def shipped_section(key: str, **changes):
    """`shipped_section("judge", name="tone")`: a params section as params.yaml (the one home of the defaults) sets
    it, with `changes` on top, validated: the schema itself holds no defaults. Also the fixture `section`."""
    import yaml
    from pydantic import BaseModel

    from weakalign.config.params import Params

    cls, node = Params, yaml.safe_load((ROOT / "params.yaml").read_text())
    for part in key.split("."):
        cls, node = cls.model_fields[part].annotation, node[part]
    assert isinstance(cls, type) and issubclass(cls, BaseModel), key
    return cls.model_validate({**node, **changes})


@pytest.fixture(scope="session")
def section():
    return shipped_section


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A saved tiny-random model directory (about 10 MB), built once per test session."""
    from weakalign.modeling.models import TINY, load_model, load_tokenizer
    from weakalign.modeling.saved_models import save_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    save_model(load_model(TINY, seed=0), load_tokenizer(TINY), out)
    return out
