"""scripts/pilot.py: a design cell is params.yaml with its overrides and seed, and every design of the grid is
a valid params file (a typo would otherwise fail an hour into the pilot)."""

import importlib.util

import pytest
import yaml

from weakalign.config.params import compose, parse_params


@pytest.fixture(scope="module")
def pilot(root):
    spec = importlib.util.spec_from_file_location("pilot", root / "scripts/pilot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cell_is_params_yaml_with_its_overrides_and_seed(pilot, root):
    base = yaml.safe_load((root / "params.yaml").read_text())
    cell = pilot.cell_params(base, {"split.n_labeled": 8, "generate_pairs.styles": ["", "Be warm."]}, seed=3)
    assert cell["split"]["n_labeled"] == 8 and cell["base"]["seed"] == 3
    assert cell["generate_pairs"]["styles"] == ["", "Be warm."]
    assert base["split"]["n_labeled"] != 8 and base["generate_pairs"]["styles"] != ["", "Be warm."]  # not changed


def test_the_default_is_the_chosen_design_and_every_design_names_what_it_varies(pilot, root):
    """params.yaml is styles_dl256_e1 (the pilot's choice); each design sets every key any design varies, so a
    cell's params do not depend on the default of the day."""
    base = yaml.safe_load((root / "params.yaml").read_text())
    assert pilot.cell_params(base, pilot.TEACHER["styles_dl256_e1"], 0) == base
    varied = set().union(*pilot.TEACHER.values()) - {"train_weak.model"}
    assert all(varied <= set(d) for d in pilot.TEACHER.values())
    with pytest.raises(KeyError, match="split.n_labled: not a key"):
        pilot.cell_params(base, {"split.n_labled": 1}, seed=0)


@pytest.mark.parametrize("grid", ["TEACHER", "TARGET"])
def test_every_design_is_a_valid_params_file(pilot, root, grid):
    base = yaml.safe_load((root / "params.yaml").read_text())
    for name, design in getattr(pilot, grid).items():
        parse_params(pilot.cell_params(base, design, seed=0), f"{grid} {name}")


def test_the_agreement_design_is_hh_local_labeling_about_1000_pairs(pilot, root):
    """Issue 29 item 7: the hh-local preset with every pair beyond D_l and the test prompts in D_u, and no prompt
    dropped for length by a 256-token limit."""
    base = compose(root / "presets/hh-local.yaml")
    for name, design in pilot.AGREEMENT.items():
        p = parse_params(pilot.cell_params(base, design, seed=0), f"AGREEMENT {name}")
        assert p.data.source == "jsonl" and p.split.n_unlabeled is None and p.holdout.n_train is None
        assert p.train_weak.dpo.max_length >= 1024 and p.align.dpo.max_length >= 1024
