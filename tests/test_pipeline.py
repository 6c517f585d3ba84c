"""The tiny preset through `dvc repro` in a temporary git repository: every stage, caching, determinism.

One module-scoped run (about two minutes on 2 cores) serves all the checks below.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).with_name("dvc"))


def _run(cmd, cwd, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def _copy_worktree(root: Path, dest: Path) -> None:
    """The files git would clone (tracked, plus untracked-but-not-ignored), so uncommitted work is tested too."""
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], root).stdout.split("\0")
    for rel in filter(None, files):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _digest(repo: Path, rels: list[str]) -> dict[str, str]:
    return {r: hashlib.sha256((repo / r).read_bytes()).hexdigest() for r in rels}


DETERMINISTIC = ["data/pairs.jsonl", "data/annotated.jsonl", "data/split/labeled.jsonl",
                 "data/split/unlabeled.jsonl", "data/labels/weak.jsonl", "metrics/feedback.json",
                 "metrics/alignment.json", "data/eval/generations.jsonl"]


@pytest.fixture(scope="module")
def repo(root, tmp_path_factory):
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    repo.mkdir()
    _copy_worktree(root, repo)
    shutil.copy(repo / "presets/tiny.yaml", repo / "params.yaml")
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], repo)
    first = _run([DVC, "repro"], repo)
    return repo, first


def test_every_stage_ran(repo):
    repo, first = repo
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    sources = yaml.safe_load((repo / "params.yaml").read_text())["align"]["sources"]
    expected = [s for s in dvc["stages"] if s != "align"] + [f"align@{s}" for s in sources]
    for stage in expected:
        assert f"Running stage '{stage}'" in first.stdout, stage
    for source in sources:
        assert (repo / "models/targets" / source / "model.safetensors").is_file()


def test_metric_keys(repo):
    repo, _ = repo
    fb = json.loads((repo / "metrics/feedback.json").read_text())
    for key in ("n_labeled", "n_unlabeled", "agreement_weak_human", "accuracy_human_vs_gold",
                "accuracy_weak_vs_gold", "gold_backs_weak_when_disagree"):
        assert key in fb, key
    assert fb["n_labeled"] == 10 and fb["n_unlabeled"] == 20
    al = json.loads((repo / "metrics/alignment.json").read_text())
    for name in ("base", "human", "weak", "gold", "random"):
        assert {"gold_reward_mean", "gold_reward_sem"} <= set(al[name])
    for name in ("human", "weak", "gold", "random"):
        assert 0 <= al[name]["win_rate_vs_base"] <= 1
    assert 0 <= al["weak_vs_human_win_rate"] <= 1
    for name in ("train_weak", "align/human", "align/weak"):
        m = json.loads((repo / f"metrics/{name}.json").read_text())
        assert {"learned", "final_loss", "n_pairs_truncated", "n_pairs_dropped_too_long"} <= set(m)
    margins = json.loads((repo / "plots/agreement_by_margin.json").read_text())
    assert sum(b["n"] for b in margins) == 20
    summary = (repo / "reports/summary.md").read_text()
    assert "weak-human agreement" in summary and "disagreements" in summary
    curves = json.loads((repo / "plots/training_curves.json").read_text())
    assert {c["run"] for c in curves} == {"weak teacher", "target (human)", "target (weak)", "target (gold)",
                                         "target (random)"}


def test_dvc_metrics_and_plots_render(repo):
    repo, _ = repo
    metrics = json.loads(_run([DVC, "metrics", "show", "--json"], repo).stdout)
    assert metrics
    plots = json.loads(_run([DVC, "plots", "show", "--json"], repo).stdout)
    assert not plots.get("errors")
    assert {"agreement_by_margin", "gold_reward", "dpo_loss", "dpo_reward_margin"} <= set(plots["data"])


def test_second_repro_runs_nothing(repo):
    repo, _ = repo
    out = _run([DVC, "repro"], repo).stdout
    assert "Running stage" not in out


def test_rerun_from_scratch_is_byte_identical(repo):
    repo, _ = repo
    before = _digest(repo, DETERMINISTIC)
    _run([DVC, "repro", "--force"], repo)
    assert _digest(repo, DETERMINISTIC) == before


def test_changing_an_align_param_leaves_the_weak_teacher_alone(repo):
    repo, _ = repo
    labels = _digest(repo, ["data/labels/weak.jsonl"])
    status = json.loads(_run([DVC, "status", "--json"], repo).stdout)
    assert status == {}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["align"]["dpo"]["beta"] = 0.2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(_run([DVC, "status", "--json"], repo).stdout))
    assert {"align@human", "align@weak"} <= stale
    assert not stale & {"base_model", "generate_pairs", "annotate", "split", "train_weak", "label_weak", "compare"}
    out = _run([DVC, "repro"], repo).stdout
    assert "Running stage 'train_weak'" not in out and "Running stage 'label_weak'" not in out
    assert "Running stage 'align@weak'" in out
    assert _digest(repo, ["data/labels/weak.jsonl"]) == labels


def test_a_failing_stage_leaves_no_output(repo, tmp_path):
    """A broken line in the raw prompts: a clear error naming file and line, and no holdout output written."""
    repo, _ = repo
    bad = tmp_path / "bad"
    shutil.copytree(repo, bad, ignore=shutil.ignore_patterns("models", ".dvc"))
    prompts = (bad / "data/raw/prompts.jsonl").read_text().splitlines()
    prompts[2] = prompts[2][:-5]
    (bad / "data/raw/prompts.jsonl").write_text("\n".join(prompts) + "\n")
    for out in ("data/prompts/train.jsonl", "data/prompts/test.jsonl"):
        (bad / out).unlink()
    res = _run([sys.executable, "stages/holdout.py", "--prompts", "data/raw/prompts.jsonl",
                "--train", "data/prompts/train.jsonl", "--test", "data/prompts/test.jsonl"], bad, check=False)
    assert res.returncode == 2
    assert "data/raw/prompts.jsonl:3: malformed JSON" in res.stderr
    assert not (bad / "data/prompts/train.jsonl").exists() and not (bad / "data/prompts/test.jsonl").exists()
