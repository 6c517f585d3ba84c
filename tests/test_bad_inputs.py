"""The bad-input corpus (tests/bad_inputs/cases.yaml): each case runs the real stage command from dvc.yaml.

Every case must end in one of two ways: exit code 2 with a message naming the file and line (or the params key)
and none of the stage's outputs left behind, or a drop counted by reason. docs/RELIABILITY.md lists them all.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weakalign.config.params import compose
from weakalign.records.io import DataError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))

# Good inputs every stage run starts from; a case replaces the ones it breaks.
GOOD = {"data/raw/prompts.jsonl": "prompts_good.jsonl", "data/prompts/all.jsonl": "prompts_good.jsonl",
        "data/prompts/test.jsonl": "test_prompts_good.jsonl",
        "data/annotated.jsonl": "pairs_good.jsonl", "data/split/labeled.jsonl": "labeled_good.jsonl",
        "data/split/unlabeled.jsonl": "unlabeled_good.jsonl"}


def _set(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value


def _stage_command(stage: str, params: dict) -> tuple[list[str], list[str]]:
    """The stage's `cmd` and its outputs (outs and metrics) from dvc.yaml, with ${section.key} (and ${item})
    resolved from `params`."""
    name, _, item = stage.partition("@")  # `align@weak`: the foreach stage's `do` with ${item} = weak
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]
    spec = spec["do"] if item else spec

    def resolve(text: str) -> str:
        text = text.replace("${item}", item)
        return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(params[m.group(1)][m.group(2)]), text)

    outs = [resolve(next(iter(o)) if isinstance(o, dict) else o) for o in spec.get("outs", []) + spec.get("metrics", [])]
    cmd = shlex.split(spec["cmd"])  # `python stages/<name>.py`: the stage resolves its paths from params
    assert cmd[0] == "python"
    return [sys.executable, *cmd[1:]], outs


def test_the_corpus_has_every_case_the_issue_lists():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 15
    for c in CASES:
        assert c["outcome"] in ("error", "drop") and c["what"] and c["expect"], c["id"]
        for src in c.get("files", {}).values():
            assert (CORPUS / src).is_file(), src


def test_reliability_doc_lists_every_case():
    doc = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    for c in CASES:
        assert f"`{c['id']}`" in doc, f"docs/RELIABILITY.md does not list case {c['id']}"
        if isinstance(c["expect"], str):
            assert c["expect"] in doc, f"docs/RELIABILITY.md does not show the message of {c['id']}"


def _workspace(case: dict, tmp_path: Path) -> dict:
    """The case's scratch workspace: the tiny preset with its overrides, the good inputs with its bad ones."""
    params = compose(ROOT / "presets" / "tiny.yaml")
    for key, value in case.get("params", {}).items():
        _set(params, key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for dest, src in (GOOD | case.get("files", {})).items():
        (tmp_path / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / src, tmp_path / dest)
    for folder in case.get("dirs", []):  # a folder where the case expects a file
        (tmp_path / folder).mkdir(parents=True)
    for fifo in case.get("fifos", []):
        (tmp_path / fifo).unlink(missing_ok=True)
        os.mkfifo(tmp_path / fifo)
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    return params


@pytest.mark.parametrize("case", [c for c in CASES if c["stage"] != "hh"], ids=lambda c: c["id"])
def test_bad_input_fails_cleanly(case, tmp_path):
    params = _workspace(case, tmp_path)
    cmd, outs = _stage_command(case["stage"], params)
    for out in outs:  # as `dvc repro` does: the stage's outputs are gone before it runs
        p = tmp_path / out
        with contextlib.suppress(NotADirectoryError):  # a case may put a file where an output's folder goes
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    env = dict(os.environ, WEAKALIGN_DEBUG="", DVC_STAGE=case["stage"])  # as `dvc repro` sets it
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stderr[-3000:]}"
    assert case["expect"] in res.stderr, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    left = [o for o in outs if (tmp_path / o).exists()]
    assert not left, f"outputs left behind: {left}"
    leftovers = [p for p in tmp_path.rglob("*.tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    assert not list(tmp_path.rglob("pwned")), "a command from params or data was run"


@pytest.mark.parametrize("case", [c for c in CASES if c.get("dvc")], ids=lambda c: c["id"])
def test_bad_input_through_dvc_repro(case, tmp_path):
    """The user's command, not the stage's: `dvc repro -s <stage>` in a scratch git+DVC repository holding the
    project's dvc.yaml. It fails with the case's message and no traceback, leaves none of the stage's outputs, and
    records nothing DVC could serve later: no dvc.lock entry, no run-cache entry. (How long DVC takes is measured in
    docs/RELIABILITY.md, not asserted here: a test suite times nothing.)"""
    params = _workspace(case, tmp_path)
    for folder in ("src", "local_models"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, WEAKALIGN_DEBUG="", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(bin_dir / "dvc"), "init", "-q"], cwd=tmp_path, check=True, env=env)
    _, outs = _stage_command(case["stage"], params)
    placed = {o: (tmp_path / o).read_bytes() for o in outs if (tmp_path / o).is_file()}  # good inputs of other cases
    res = subprocess.run([str(bin_dir / "dvc"), "repro", "-s", case["stage"]], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=300)
    said = res.stdout + res.stderr
    assert res.returncode != 0, said[-3000:]
    assert case.get("dvc_expect", case["expect"]) in said and "Traceback" not in said, said[-3000:]
    # DVC removes a stage's outputs before it runs it; where DVC refuses first, what the test put there stays as it was
    left = [o for o in outs if (tmp_path / o).is_dir()
            or (tmp_path / o).is_file() and (tmp_path / o).read_bytes() != placed.get(o)]
    assert not left, f"outputs written and left behind: {left}"
    assert not (tmp_path / "dvc.lock").exists()
    assert not (tmp_path / ".dvc/cache/runs").exists() or not any((tmp_path / ".dvc/cache/runs").rglob("*"))
    assert not list(tmp_path.rglob("pwned")), "a command from params or data was run"


@pytest.mark.parametrize("case", [c for c in CASES if c["stage"] == "hh"], ids=lambda c: c["id"])
def test_bad_hh_rows(case, tmp_path, monkeypatch):
    from weakalign.data.sources import read_hh

    monkeypatch.chdir(tmp_path)
    (dest, src), = case["files"].items()
    Path(dest).parent.mkdir(parents=True)
    shutil.copy(CORPUS / src, dest)
    if case["outcome"] == "drop":
        pairs, dropped = read_hh(dest)
        assert {k: v for k, v in dropped.items() if v} == case["expect"]
        assert len(pairs) + sum(dropped.values()) == sum(1 for line in open(dest) if line.strip())
    else:
        with pytest.raises(DataError) as e:
            read_hh(dest)
        assert case["expect"] in str(e.value)


def test_outputs_of_a_stage_run_directly_honour_the_umask(tmp_path):
    """As each stage's docstring shows it (not under `dvc repro`, whose checkout would repair the modes)."""
    params = compose(ROOT / "presets" / "tiny.yaml")
    params["holdout"] |= {"n_test": 2, "n_train": None}  # the corpus's six good prompts
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for dest, src in GOOD.items():
        (tmp_path / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / src, tmp_path / dest)
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    cmd, outs = _stage_command("holdout", params)
    for out in outs:
        (tmp_path / out).unlink(missing_ok=True)
    res = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *cmd], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for out in outs:
        assert (tmp_path / out).stat().st_mode & 0o777 == 0o640, out  # mkstemp alone would give 0600
