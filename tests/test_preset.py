"""weakalign.preset: a preset's overrides as `dvc exp run -S` arguments give exactly the composed preset.

tests/test_pipeline.py runs `weakalign preset tiny` end to end in a clean clone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from weakalign.config.params import compose, read_yaml
from weakalign.preset import command, preset_path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_the_dvc_overrides_of_a_preset_write_the_composed_preset(name, tmp_path, monkeypatch):
    """DVC's own `-S` writer (dvc.utils.hydra.apply_overrides, what `dvc exp run -S` calls) applied to a copy of
    params.yaml gives the composed preset, study included: free mappings replaced (`~key`, `+key=`), not merged."""
    from dvc.utils.hydra import apply_overrides

    monkeypatch.chdir(ROOT)
    argv = command(preset_path(name), name)
    assert argv[:6] == ["dvc", "exp", "run", "--temp", "-n", name]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "-S"]
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(str(tmp_path / "params.yaml"), sets)
    assert read_yaml(tmp_path / "params.yaml") == compose(ROOT / "presets" / f"{name}.yaml")


def test_a_bad_preset_fails_before_dvc_runs(tmp_path, capsys):
    from weakalign.preset import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'params.yaml'}\nholdout: {{n_test: -1}}\n")
    assert main([str(bad)]) == 2  # before DVC is imported
    assert "holdout.n_test" in capsys.readouterr().err
