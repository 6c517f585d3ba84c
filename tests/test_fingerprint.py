"""The result fingerprint (weakalign.fingerprint): a study run stays current while the results are the same."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weakalign import fingerprint
from weakalign.study import planning, running


def _tree(root: Path, pairs: str = '{"a": 1}\n', seconds: float = 1.0) -> Path:
    (root / "data/split").mkdir(parents=True, exist_ok=True)
    (root / "metrics/align").mkdir(parents=True, exist_ok=True)
    (root / "data/pairs.jsonl").write_text(pairs)
    (root / "data/split/unlabeled.jsonl").write_text('{"b": 2}\n')
    (root / "metrics/align/human.json").write_text(json.dumps({"final_loss": 0.5, "train_seconds": seconds}))
    (root / "metrics/train_weak.info.json").write_text(json.dumps({"train_seconds": seconds, "host": str(root)}))
    (root / "metrics/study.json").write_text(json.dumps({"n_seeds": seconds}))
    return root


def test_results_are_the_data_models_and_metrics_without_timings(tmp_path):
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b", seconds=99.0)
    ha = fingerprint.result_hashes(a)
    assert set(ha) == {"data/pairs.jsonl", "data/split/unlabeled.jsonl", "metrics/align/human.json"}
    assert ha == fingerprint.result_hashes(b)  # timings, bookkeeping and the study's own metrics aside
    c = _tree(tmp_path / "c", pairs='{"a": 2}\n')
    assert fingerprint.results_digest(fingerprint.result_hashes(c)) != fingerprint.results_digest(ha)
    # scripts/same_results.py is the same comparison, file by file.
    same = [sys.executable, "scripts/same_results.py"]
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([*same, str(a), str(b)], cwd=root, capture_output=True).returncode == 0
    out = subprocess.run([*same, str(a), str(c)], cwd=root, capture_output=True, text=True)
    assert out.returncode == 1 and "data/pairs.jsonl" in out.stdout and "2 files identical" in out.stdout



def test_a_records_folder_hashes_as_the_file_it_replaced(tmp_path):
    """The labelers' and the source's outputs became folders (records.jsonl, or a README when there are none): their
    results hash under the old file names, so fingerprints measured before still compare."""
    old, new = _tree(tmp_path / "old"), _tree(tmp_path / "new")
    (old / "data/labels").mkdir(parents=True)
    (old / "data/labels/rm.jsonl").write_text('{"pair_id": "p1"}\n')
    (old / "data/labels/judge.jsonl").write_text("")
    for folder, files in (("rm", {"records.jsonl": '{"pair_id": "p1"}\n'}), ("judge", {"README.md": "off\n"})):
        (new / "data/labels" / folder).mkdir(parents=True)
        for name, text in files.items():
            (new / "data/labels" / folder / name).write_text(text)
    assert fingerprint.result_hashes(new) == fingerprint.result_hashes(old)
    assert {"data/labels/rm.jsonl", "data/labels/judge.jsonl"} <= set(fingerprint.result_hashes(new))

def test_two_codes_give_the_same_results_only_on_a_machine_that_measured_both():
    records = {"old": {"amd": {"results": "r1"}, "intel": {"results": "r9"}},
               "new": {"amd": {"results": "r1"}},
               "other": {"amd": {"results": "r2"}},
               "elsewhere": {"intel": {"results": "r9"}}}
    assert fingerprint.same_results("x", "x", {})
    assert fingerprint.same_results("old", "new", records)
    assert not fingerprint.same_results("old", "other", records)
    assert not fingerprint.same_results("new", "elsewhere", records)  # no machine kind measured both
    assert not fingerprint.same_results(None, "new", records) and not fingerprint.same_results("x", "y", {})


def test_a_summary_stays_current_across_a_code_change_that_keeps_the_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"split": {"n_labeled": 8}, "study": {"seeds": [0]}}))
    overrides = {"align.sources": ["human"], "base.seed": 0}
    (tmp_path / "runs").mkdir()
    summary = {"run": "s0", "digest": "whatever", "code": "old", "params_digest": planning.params_digest(overrides)}
    (tmp_path / "runs/s0.json").write_text(json.dumps(summary))
    same = {"old": {"amd": {"results": "r1"}}, "new": {"amd": {"results": "r1"}}}
    changed = {"old": {"amd": {"results": "r1"}}, "new": {"amd": {"results": "r2"}}}
    assert planning.current(tmp_path / "runs", "s0", "d", overrides, "new", same) == summary
    assert planning.current(tmp_path / "runs", "s0", "d", overrides, "new", changed) is None
    assert planning.current(tmp_path / "runs", "s0", "d", overrides, "new", {}) is None  # not fingerprinted
    assert planning.current(tmp_path / "runs", "s0", "d", overrides, "old", {}) == summary
    # Other params: stale whatever the code.
    assert planning.current(tmp_path / "runs", "s0", "d", {**overrides, "base.seed": 1}, "old", same) is None
    # A summary from before the fingerprint (no params digest): current only with the same params and code.
    (tmp_path / "runs/s0.json").write_text(json.dumps({"run": "s0", "digest": "d"}))
    assert planning.current(tmp_path / "runs", "s0", "d", overrides, "new", same) is not None
    assert planning.current(tmp_path / "runs", "s0", "e", overrides, "new", same) is None



def test_a_run_stays_current_when_only_paths_moved_since_its_commit(tmp_path, monkeypatch):
    """Where outputs are written changes no result: a run recorded at a commit whose params.yaml differs from today's
    only in `paths` stays current (the labelers' outputs became folders on 2026-12-07), and so does one that only
    lacks keys added since; a changed value of any other key makes it stale."""
    monkeypatch.chdir(tmp_path)
    then = {"paths": {"rm_labels": "data/labels/rm.jsonl"}, "split": {"n_labeled": 8}, "study": {"seeds": [0]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(then))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "params.yaml")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the run's commit")
    overrides = {"align.sources": ["human"], "base.seed": 0}
    old_digest = hashlib.sha256(json.dumps(planning.effective_params(overrides), sort_keys=True).encode()).hexdigest()
    summary = {"run": "s0", "digest": "d", "code": "c", "commit": _git(tmp_path, "rev-parse", "HEAD").strip(),
               "params": overrides, "params_digest": old_digest[:12]}  # as recorded before `paths` left the digest
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/s0.json").write_text(json.dumps(summary))
    # A key added since (train_weak.label_noise on 2026-12-07) is read at today's default: current, unless the run's
    # own keys changed; its code's results are the fingerprint's to judge.
    for today, is_current in (({**then, "paths": {"rm_labels": "data/labels/rm"}}, True),
                              ({**then, "split": {"n_labeled": 9}}, False),
                              ({**then, "split": {"n_labeled": 8, "new_key": 0.0}, "train_weak": {"x": 1}}, True),
                              ({**then, "split": {"n_labeled": 9, "new_key": 0.0}}, False)):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(today))
        assert (planning.current(tmp_path / "runs", "s0", "e", overrides, "c", {}) is not None) is is_current

def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository shaped like ours, and a fake `dvc` whose `repro` writes results that depend on the
    clone's code (stages/gen.py's text), its params (the tiny preset with the study's sources) and its PYTHONPATH."""
    repo = tmp_path / "repo"
    (repo / "stages").mkdir(parents=True)
    (repo / "src/weakalign").mkdir(parents=True)
    (repo / "presets").mkdir()
    (repo / "dvc.yaml").write_text("stages: {gen: {cmd: python stages/gen.py}}\n")
    (repo / "stages/gen.py").write_text("VALUE = 1\n")
    (repo / "src/weakalign/study").mkdir()
    (repo / "src/weakalign/study/running.py").write_text("# not pipeline code\n")
    (repo / "presets/tiny.yaml").write_text(yaml.safe_dump({"align": {"sources": ["human", "weak"]}}))
    (repo / "params.yaml").write_text(yaml.safe_dump({"align": {"sources": ["weak"]},
                                                      "study": {"sources": ["gold", "weak", "flipped"]}}))
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    dvc = tmp_path / "dvc"
    dvc.write_text("#!/bin/sh\nmkdir -p data\n"
                   'echo "$PYTHONPATH" > data/pythonpath.txt\n'
                   "cat stages/gen.py params.yaml > data/out.jsonl\n")
    dvc.chmod(0o755)
    return repo, str(dvc)


def test_measure_repros_the_tiny_preset_with_the_studys_sources_in_a_clone_of_the_commit(repo, monkeypatch):
    repo, dvc = repo
    code, results = fingerprint.measure("HEAD", dvc, repo)
    assert code == fingerprint.code_digest(repo)
    assert (code, results) == fingerprint.measure("HEAD", dvc, repo)  # the same commit, the same results
    # Not pipeline code: the same code digest; a stage's edit: another code and other results.
    (repo / "src/weakalign/study/running.py").write_text("# still not pipeline code, edited\n")
    (repo / "src/weakalign/study.py").write_text("# the study before it was a package: not pipeline code either\n")
    assert fingerprint.code_digest(repo) == code
    (repo / "src/weakalign/layer").mkdir()  # a pipeline module in a sub-package is pipeline code
    (repo / "src/weakalign/layer/mod.py").write_text("X = 1\n")
    assert fingerprint.code_digest(repo) != code
    (repo / "src/weakalign/layer/mod.py").unlink()
    (repo / "stages/gen.py").write_text("VALUE = 2\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    code2, results2 = fingerprint.measure("HEAD", dvc, repo)
    assert code2 != code and results2 != results
    assert fingerprint.measure("HEAD~1", dvc, repo) == (code, results)  # an older commit, measured in its clone
    # What the fake repro saw: the tiny preset with the study's extra sources, the clone's own src first.
    monkeypatch.setattr(fingerprint, "result_hashes", lambda root: {
        "out": (root / "data/out.jsonl").read_text(), "path": (root / "data/pythonpath.txt").read_text()})
    monkeypatch.setattr(fingerprint, "results_digest", lambda h: json.dumps(h))
    seen = json.loads(fingerprint.measure("HEAD", dvc, repo)[1])
    assert "- human\n  - weak\n  - gold\n  - flipped" in seen["out"]
    assert seen["path"].strip().endswith("/repo/src") and "weakalign-fingerprint-" in seen["path"]


def test_ensure_records_once_per_code_and_machine_and_a_failed_repro_says_so(repo, monkeypatch, tmp_path):
    repo, dvc = repo
    monkeypatch.chdir(repo)
    code = fingerprint.code_digest()
    assert fingerprint.ensure("HEAD", code, dvc, kind="amd") is True
    rec = fingerprint.load()[code]["amd"]
    assert rec["commit"] == _git(repo, "rev-parse", "HEAD").strip()[:12] and len(rec["results"]) == 12
    assert fingerprint.ensure("HEAD", code, dvc, kind="amd") is False  # recorded: nothing measured
    with pytest.raises(RuntimeError, match="has code"):
        fingerprint.ensure("HEAD", "not-this-code", dvc, kind="amd")
    bad = tmp_path / "bad-dvc"
    bad.write_text("#!/bin/sh\necho 'ERROR: stage gen failed' >&2\nexit 1\n")
    bad.chmod(0o755)
    with pytest.raises(RuntimeError, match="dvc repro at .* failed:\nERROR: stage gen failed"):
        fingerprint.measure("HEAD", str(bad), repo)


def test_the_study_measures_the_fingerprints_that_decide_its_runs(tmp_path, monkeypatch):
    """HEAD's, and the code of a run with today's params made by other code, at that run's commit; not a run with
    other params (it is stale whatever the results)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"split": {"n_labeled": 8}}))
    runs = {"s0": {"base.seed": 0}, "s1": {"base.seed": 1}, "s2": {"base.seed": 2}}
    (tmp_path / "runs").mkdir()
    for run, code, commit, params in (("s0", "old", "c0ffee", runs["s0"]), ("s1", "new", "beef", runs["s1"]),
                                      ("s2", "older", "dead", {"base.seed": 9})):
        (tmp_path / f"runs/{run}.json").write_text(json.dumps(
            {"code": code, "commit": commit, "params_digest": planning.params_digest(params)}))
    calls = []
    monkeypatch.setattr(fingerprint, "machine_kind", lambda m=None: "amd")
    monkeypatch.setattr(fingerprint, "ensure", lambda rev, code, dvc, kind: calls.append((rev, code, kind)))
    running._fingerprints(tmp_path / "runs", runs, "new", "dvc", commit=False)
    assert calls == [("HEAD", "new", "amd"), ("c0ffee", "old", "amd")]


def test_two_machines_records_and_summaries_merge_through_a_shared_remote(tmp_path):
    """Two clones run a shard each (`study run --shard 1/2` and `2/2`) on two kinds of machine: each commits its
    fingerprint of the same code (adjacent lines of the records) and its runs' summaries, and pushes; the second
    pulls the first's work. git merges without a conflict (the records merge by union, .gitattributes), and both
    machines' records and summaries are there for the report."""
    root = Path(__file__).resolve().parents[1]
    remote, a, b = tmp_path / "remote.git", tmp_path / "a", tmp_path / "b"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(a)], check=True, capture_output=True)
    (a / ".gitattributes").write_text((root / ".gitattributes").read_text())
    fingerprint.record("c0de", "r1", "abc", "amd", a / fingerprint.RECORDS)  # measured before the shards started
    subprocess.run([*git, "-C", str(a), "add", "."], check=True)
    subprocess.run([*git, "-C", str(a), "commit", "-qm", "start"], check=True)
    subprocess.run([*git, "-C", str(a), "push", "-q", "origin", "HEAD"], check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(b)], check=True, capture_output=True)
    for clone, kind, run in ((a, "gpu-a", "s0"), (b, "gpu-b", "s1")):
        fingerprint.record("head", "r2", "def", kind, clone / fingerprint.RECORDS)
        (clone / "study/runs/default").mkdir(parents=True)
        (clone / f"study/runs/default/{run}.json").write_text(json.dumps({"run": run, "code": "head"}))
        subprocess.run([*git, "-C", str(clone), "add", "."], check=True)
        subprocess.run([*git, "-C", str(clone), "commit", "-qm", f"study: run {run}"], check=True)
    subprocess.run([*git, "-C", str(a), "push", "-q", "origin", "HEAD"], check=True, capture_output=True)
    pull = subprocess.run([*git, "-C", str(b), "pull", "-q", "--no-rebase", "origin", "HEAD"], capture_output=True,
                          text=True)
    assert pull.returncode == 0, pull.stderr
    records = fingerprint.load(b / fingerprint.RECORDS)
    assert records == {"c0de": {"amd": records["c0de"]["amd"]},
                       "head": {"gpu-a": records["head"]["gpu-a"], "gpu-b": records["head"]["gpu-b"]}}
    assert {p.name for p in (b / "study/runs/default").iterdir()} == {"s0.json", "s1.json"}
    # The next record rewrites the merged file whole and sorted.
    fingerprint.record("head", "r2", "def", "gpu-b", b / fingerprint.RECORDS)
    assert fingerprint.load(b / fingerprint.RECORDS) == records


def test_an_experiment_pushed_from_one_machine_is_applied_on_another(tmp_path):
    """docs/STUDY.md, "On several machines": `dvc exp push origin --all-commits` sends a machine's experiments to
    the git remote and their outputs to the DVC remote; another clone pulls them (`dvc exp pull origin
    --all-commits`), lists them and `dvc exp apply` brings a run's outputs into its workspace. A one-stage project
    stands in for the pipeline: what is tested is the commands the page gives."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    remote, store, a, b = tmp_path / "remote.git", tmp_path / "store", tmp_path / "a", tmp_path / "b"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")

    def run(*cmd, cwd):
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-1500:]}{res.stderr[-1500:]}"
        return res.stdout

    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    run("git", "clone", "-q", str(remote), str(a), cwd=tmp_path)
    run(dvc, "init", "-q", cwd=a)
    run(dvc, "remote", "add", "-d", "store", str(store), cwd=a)
    (a / "params.yaml").write_text("seed: 0\n")
    (a / "dvc.yaml").write_text("stages:\n  draw:\n    cmd: python -c \"import yaml; s = yaml.safe_load(open("
                                "'params.yaml'))['seed']; open('out.txt', 'w').write(f'seed {s}')\"\n"
                                "    params: [seed]\n    outs: [out.txt]\n")
    run("git", "add", "-A", cwd=a)
    run("git", "commit", "-qm", "start", cwd=a)
    run("git", "push", "-q", "origin", "HEAD", cwd=a)
    run(dvc, "exp", "run", "-q", "-n", "study-s1", "-S", "seed=1", cwd=a)
    run(dvc, "exp", "push", "origin", "--all-commits", cwd=a)
    run("git", "clone", "-q", str(remote), str(b), cwd=tmp_path)
    run(dvc, "exp", "pull", "origin", "--all-commits", cwd=b)
    assert "study-s1" in run(dvc, "exp", "list", "--name-only", cwd=b)
    run(dvc, "exp", "apply", "study-s1", cwd=b)
    assert (b / "out.txt").read_text() == "seed 1"  # the output came from the DVC remote: b never ran the stage
