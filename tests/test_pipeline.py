"""The tiny preset through `dvc repro` in temporary git repositories: every stage, caching, determinism, resume.

One tiny run (about three minutes on 2 cores) serves most checks; the determinism and kill/resume tests each build
one more clean repository and compare it with that run. `make test` runs the suite on two pytest-xdist workers
(`--dist loadgroup`): the tests that use the run's repository (fixture `repo`) form the group `tiny_run`, one
worker's, as they change it in turn; the kill/resume test compares with the run's first results, written down when
it was built, so it runs beside them on the other worker. The accelerate test restores the stages it does not
change from a copy of that run's first DVC cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from filelock import FileLock

from weakalign.config.params import compose
from weakalign.records.io import read_json, read_metrics, write_json

pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).with_name("dvc"))


def _env(base=None) -> dict:
    env = dict(base or os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd, cwd, check=True, crash_after=None):
    """Run a command in the test's environment; `crash_after` sets WEAKALIGN_CRASH_AFTER (see resume.py)."""
    extra = {"WEAKALIGN_CRASH_AFTER": crash_after} if crash_after else {}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env(dict(os.environ, **extra)))
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
                 "data/split/unlabeled.jsonl", "data/labels/weak.jsonl", "data/labels/rm/records.jsonl",
                 "data/labels/judge/records.jsonl", "metrics/feedback.json",
                 "metrics/alignment.json", "data/eval/generations.jsonl"]
GENERATIONS = "data/eval/generations.jsonl"
# What the set of aligned sources changes: a row or key per source (the rest of these files does not depend on it).
PER_SOURCE = {"metrics/feedback.json", "metrics/alignment.json", GENERATIONS}


def _only_sources(metrics: dict, dropped: set[str]) -> dict:
    """feedback.json's or alignment.json's results without the entries of the `dropped` sources: their own keys,
    `n_feedback_<source>`, `sources.<source>` and every head-to-head pairing one of them."""
    def keep(key: str) -> bool:
        return key not in dropped and key.removeprefix("n_feedback_") not in dropped
    out = {k: v for k, v in metrics.items() if keep(k)}
    if "sources" in out:
        out["sources"] = {k: v for k, v in out["sources"].items() if keep(k)}
    if "head_to_head" in out:
        out["head_to_head"] = {k: v for k, v in out["head_to_head"].items() if not set(k.split("_vs_")) & dropped}
    return out


def _fresh_repo(root: Path, repo: Path, change=None) -> Path:
    """A new git repository holding this worktree with the tiny preset as params.yaml: a clean clone, in effect.

    `change(params)` edits the preset's params (a dict) before the commit."""
    repo.mkdir(parents=True, exist_ok=True)  # it may already hold local_models/ (ignored by git)
    _copy_worktree(root, repo)
    params = compose(repo / "presets/tiny.yaml")  # the preset's overrides on the default
    if change is not None:
        change(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], repo)
    return repo


# Metrics that measure the machine, not the result: they differ between any two runs.
TIMINGS = {"train_seconds", "label_seconds", "label_seconds_per_1000_pairs", "resumed_from_step"}
METRICS = ["metrics/pairs.json", "metrics/annotate.json", "metrics/train_weak.json", "metrics/label_weak.json",
           "metrics/label_rm.json", "metrics/label_judge.json", "metrics/feedback.json", "metrics/align/human.json", "metrics/align/weak.json", "metrics/alignment.json"]


def _only_numbers(d) -> bool:
    return all(_only_numbers(v) if isinstance(v, dict) else v is None or type(v) in (int, float) for v in d.values())


def _results(repo: Path) -> dict:
    return {m: {k: v for k, v in json.loads((repo / m).read_text()).items() if k not in TIMINGS} for m in METRICS}


def _tiny_run(root: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny preset's first `dvc repro` in a fresh repository, and what it printed and produced (DETERMINISTIC's
    hashes, METRICS' results), written down as soon as it is built: later tests of the `tiny_run` group change the
    repository. Built once per session however many pytest-xdist workers ask: the first builds it under a file lock
    in the folder the workers share, the others wait for it."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny-run"
    first = folder / "first.json"
    with FileLock(folder.with_suffix(".lock")):
        if not first.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            repo = _fresh_repo(root, folder / "repo")
            res = _run([DVC, "repro"], repo)
            # Its DVC cache as the run left it, for a test that reuses the stages it does not change (hard links:
            # DVC never writes a cached file in place).
            shutil.copytree(repo / ".dvc/cache", folder / "first-cache", copy_function=os.link)
            sources = yaml.safe_load((repo / "params.yaml").read_text())["align"]["sources"]
            record = {"stdout": res.stdout, "stderr": res.stderr, "digests": _digest(repo, DETERMINISTIC),
                      "results": _results(repo), "sources": sources,
                      "generations": (repo / GENERATIONS).read_text().splitlines()}
            write_json(first, record)  # atomic: a worker that waited never reads half a file
    return folder / "repo", read_json(first)


# The tests that use (and change) the tiny run's repository: one pytest-xdist worker runs them all, in file order.
tiny_run = pytest.mark.xdist_group("tiny_run")


@pytest.fixture(scope="module")
def repo(root, tmp_path_factory, request):
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(request.config.option, "loadgroup", False):
        # Two workers changing one repository at once would make these tests flaky, not fail: refuse instead.
        loose = [i.nodeid for i in request.session.items
                 if i.module is request.module and "repo" in i.fixturenames and not i.nodeid.endswith("@tiny_run")]
        assert not loose, (f"pytest-xdist did not put these in the group tiny_run: {loose} (no @tiny_run mark, or "
                           "pytest 9.2 with xdist 3.8: pytest-xdist#1386); use the test extras' pins or TEST_WORKERS=0")
    path, first = _tiny_run(root, tmp_path_factory)
    return path, SimpleNamespace(stdout=first["stdout"], stderr=first["stderr"])


@tiny_run
def test_every_stage_ran(repo):
    repo, first = repo
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    sources = yaml.safe_load((repo / "params.yaml").read_text())["align"]["sources"]
    expected = [s for s in dvc["stages"] if s != "align"] + [f"align@{s}" for s in sources]
    for stage in expected:
        assert f"Running stage '{stage}'" in first.stdout, stage
    for source in sources:
        assert (repo / "models/targets" / source / "model.safetensors").is_file()


@tiny_run
def test_metric_keys(repo):
    repo, _ = repo
    fb = read_metrics(repo / "metrics/feedback.json")
    for key in ("n_labeled", "n_unlabeled", "agreement_weak_human", "accuracy_human_vs_gold",
                "accuracy_weak_vs_gold", "gold_backs_weak_when_disagree"):
        assert key in fb, key
    assert fb["n_labeled"] == 10 and fb["n_unlabeled"] == 20
    al = read_metrics(repo / "metrics/alignment.json")
    for name in ("base", "human", "weak", "gold", "random"):
        assert {"gold_reward_mean", "gold_reward_sem"} <= set(al[name])
    for name in ("human", "weak", "gold", "random"):
        assert 0 <= al[name]["win_rate_vs_base"] <= 1
    assert 0 <= al["weak_vs_human_win_rate"] <= 1
    for name in ("train_weak", "align/human", "align/weak"):
        m = read_metrics(repo / f"metrics/{name}.json")
        assert {"learned", "final_loss", "n_train_pairs_truncated", "n_train_pairs_dropped_too_long"} <= set(m)
    margins = json.loads((repo / "plots/agreement_by_margin.json").read_text())
    assert sum(b["n"] for b in margins if b["measure"] == "agreement_weak_human") == 20
    summary = (repo / "reports/summary.md").read_text()
    assert "weak-human agreement" in summary and "disagreements" in summary
    curves = json.loads((repo / "plots/training_curves.json").read_text())
    sources = yaml.safe_load((repo / "params.yaml").read_text())["align"]["sources"]
    assert {c["run"] for c in curves} == {"weak teacher"} | {f"target ({x})" for x in sources}
    # The analysis of issue 3: intervals, the counts they rest on, every feedback source's size, head to head.
    for key in ("agreement_weak_human", "accuracy_weak_vs_gold", "gold_backs_weak_when_disagree"):
        assert fb[key] is None or fb[f"{key}_lo"] <= fb[key] <= fb[f"{key}_hi"], key
    assert fb["n_feedback_weak_disagree"] == fb["n_disagree"]
    assert 0 < fb["n_feedback_weak_confident"] <= fb["n_unlabeled"]
    assert len(al["head_to_head"]) == len(sources) * (len(sources) - 1) // 2
    assert all(v["lo"] <= v["win_rate"] <= v["hi"] for v in al["head_to_head"].values())
    assert "Head to head" in summary and "length-matched" in summary
    # The other labelers (issue 3): on, labeling all of D_u, compared, costed, and trained on.
    rm = read_metrics(repo / "metrics/label_rm.json")
    judge = read_metrics(repo / "metrics/label_judge.json")
    assert rm["enabled"] and rm["n_pairs"] == 20 and rm["n_train_pairs"] == 10 and rm["steps"] == 3
    assert rm["label_seconds_per_1000_pairs"] > 0 and rm["label_tflops_per_1000_pairs"] > 0 and rm["train_tflops"] >= 0
    assert judge["enabled"] and judge["n_decided"] + judge["n_ties"] + judge["n_too_long"] == 20
    assert judge["label_seconds_per_1000_pairs"] > 0 and judge["label_tflops_per_1000_pairs"] > 0
    assert fb["n_rm_decided"] == 20 and fb["agreement_rm_human"] is not None
    assert fb["n_judge_decided"] == judge["n_decided"]
    assert fb["n_feedback_rm"] == 20 and 0 < fb["n_feedback_judge"] <= 20  # ties broken by the mean log-odds
    assert "## Labelers of D_u" in summary and "| rm |" in summary and "| judge |" in summary
    assert len(list((repo / "dvclive/label_rm/plots/metrics").glob("*.tsv"))) > 0
    # Issue 4: the SFT stage ran for the target (the weak LLM is `base`, so it shares it) and the weak teacher is a
    # LoRA adapter on that SFT model.
    sft = read_metrics(repo / "metrics/sft.json")
    assert sft["enabled"] and sft["target_steps"] == 2 and sft["target_final_loss"] > 0 and sft["weak_steps"] is None
    assert (repo / "models/sft/target/model.safetensors").is_file() and (repo / "models/sft/weak/README").is_file()
    adapter = json.loads((repo / "models/weak/adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "models/sft/target"


def _keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@tiny_run
def test_metrics_hold_only_numbers_under_pinned_keys(repo, root):
    """Every metrics file holds numbers and nulls only (bookkeeping sits in its .info.json), and its key set is
    the pinned one: a rename or a dropped key breaks `dvc metrics diff` across commits, so it must be deliberate
    (regenerate the fixture with WEAKALIGN_WRITE_METRIC_KEYS=1 and commit it with the change)."""
    repo, _ = repo
    found = {}
    for path in sorted((repo / "metrics").rglob("*.json")):
        # study*.json is written by `make study`, not by a stage, under its own contract (docs/STUDY.md)
        if path.name.endswith(".info.json") or path.name.startswith("study"):
            continue
        rel = path.relative_to(repo / "metrics").as_posix()
        items = dict(_keys(json.loads(path.read_text())))
        bad = {k: v for k, v in items.items() if isinstance(v, (str, bool))}
        assert not bad, f"metrics/{rel} holds strings or flags: {bad}"
        assert path.with_name(path.stem + ".info.json").is_file() or rel == "headline.json", rel
        found[rel] = sorted(items)
    fixture = root / "tests/fixtures/metric_keys.json"
    if os.environ.get("WEAKALIGN_WRITE_METRIC_KEYS"):
        fixture.write_text(json.dumps(found, indent=1) + "\n")
    assert found == json.loads(fixture.read_text())
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert len(headline) == 10 and headline["gold_reward_base"] is not None
    # What a user sees: the headline at a glance (at most 200 columns), and a run's own metrics, not the study's.
    shown = _run([DVC, "metrics", "show", "metrics/headline.json"], repo).stdout.splitlines()
    assert len(shown) == 2 and max(map(len, shown)) <= 200, shown
    assert "study" not in _run([DVC, "metrics", "show"], repo).stdout


@tiny_run
def test_every_saved_model_has_a_card_naming_its_real_base_data_and_params(repo):
    """Model cards: the base model the weights come from (not a local path), the data's sha256, the training
    params; the LoRA weak teacher's replaces PEFT's placeholder."""
    import hashlib

    repo, _ = repo
    for rel in ("models/base", "models/weak", "models/targets/human", "models/targets/weak", "models/sft/target"):
        card = (repo / rel / "README.md").read_text()
        front = yaml.safe_load(card.split("---")[1])
        assert front["base_model"].startswith("weakalign tiny-random"), (rel, front)
    weak = (repo / "models/weak/README.md").read_text()
    assert "library_name: peft" in weak and "[More Information Needed]" not in weak
    labeled = hashlib.sha256((repo / "data/split/labeled.jsonl").read_bytes()).hexdigest()
    assert labeled in weak and "beta:" in weak
    target = (repo / "models/targets/human/README.md").read_text()
    assert hashlib.sha256((repo / "data/feedback/human.jsonl").read_bytes()).hexdigest() in target


@tiny_run
def test_the_report_leads_with_its_headline_embeds_its_figure_and_says_where_it_comes_from(repo):
    repo, _ = repo
    text = (repo / "reports/summary.md").read_text()
    head = json.loads((repo / "metrics/headline.json").read_text())
    first = text.split("\n\n")[1]
    assert f"{head['gold_reward_weak']:.3f}" in first and f"{head['gold_reward_human']:.3f}" in first
    assert "not over seeds" in first
    assert "](summary.png)" in text and (repo / "reports/summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Provenance" in text and "weakalign tiny-random" in text
    rows = json.loads((repo / "plots/gold_reward.json").read_text())
    assert [r["model"] for r in rows][:3] == ["base", "human", "weak"]


@tiny_run
def test_dvc_metrics_and_plots_render(repo, tmp_path):
    repo, _ = repo
    shown = _run([DVC, "metrics", "show", "--json"], repo)
    files = set(json.loads(shown.stdout)[""]["data"])
    # Results only: no stage's `.info.json` bookkeeping (timings, flags) and no folder's .gitignore, so that two
    # commits with the same results diff to nothing; every file loads (a cache-less checkout lacks the bookkeeping).
    assert files == {"metrics/headline.json"}, files  # the one declared metric: a stage's file is read by path
    lines = _run([DVC, "metrics", "show"], repo).stdout.splitlines()
    assert len(lines) == 2 and max(map(len, lines)) <= 200, lines
    assert "weak.gold_reward_mean" in _run([DVC, "metrics", "show", "metrics/alignment.json"], repo).stdout
    assert "failed to load" not in shown.stderr
    plots = json.loads(_run([DVC, "plots", "show", "--json"], repo).stdout)
    assert not plots.get("errors")
    assert {"agreement_by_margin", "gold_reward", "dpo_loss", "dpo_reward_margin"} <= set(plots["data"])
    # The HTML page declares its charset (DVC's own does not, and a browser opening it from disk turns Vega's minus
    # signs into mojibake) and embeds every plot.
    _run([DVC, "plots", "show", "-o", str(tmp_path / "plots")], repo)
    page = (tmp_path / "plots/index.html").read_text()
    assert '<meta charset="utf-8">' in page and page.count("vegaEmbed(") >= 4


@tiny_run
def test_second_repro_runs_nothing(repo):
    repo, _ = repo
    out = _run([DVC, "repro"], repo).stdout
    assert "Running stage" not in out


@pytest.mark.whole_run
def test_a_second_clean_clone_killed_six_times_resumes_to_the_same_bytes(root, tmp_path, tmp_path_factory):
    """Determinism and resume in one second run from scratch (a whole tiny run costs over 2 minutes of `make test`).

    A second clean clone runs the pipeline from scratch, but six long stages are SIGKILLed mid-run (one per `dvc
    repro`) before a last repro runs it to the end. Each kill lands right after a checkpoint or batch is on disk
    (WEAKALIGN_CRASH_AFTER, see resume.py); the next `dvc repro` reruns the killed stage, which resumes from its work
    folder instead of starting over. Every label, generation and result file is then byte-identical to the first
    clone's, so the same params on the same machine give the same labels and metrics, killed or not.

    The clone aligns three of the first run's eight sources: `human`, `weak` (killed mid-run) and `weak_confident`,
    whose rows are drawn by weight; the other five train through the same stage on other labels, about 11 s each in
    a tiny run on its own. What depends on the set of sources (PER_SOURCE) is compared on those three's rows and keys.
    """
    sources = ["human", "weak", "weak_confident"]
    crashed = _fresh_repo(root, tmp_path / "crashed", lambda params: params["align"].update(sources=sources))
    kills = [("generate_pairs:1", "checkpoints/generate_pairs/round1.jsonl", "data/pairs.jsonl"),
             ("train_weak:2", "checkpoints/train_weak/checkpoint-2/trainer_state.json", "models/weak"),
             ("label_weak:1", "checkpoints/label_weak/rewards.jsonl", "data/labels/weak.jsonl"),
             ("label_rm:2", "checkpoints/label_rm/checkpoint-2/trainer_state.json", "data/labels/rm"),
             ("align@weak:1", "checkpoints/align/weak/checkpoint-1/trainer_state.json", "models/targets/weak"),
             ("evaluate:2", "checkpoints/evaluate/base.jsonl", "data/eval/generations.jsonl")]
    logs = []
    for spec, left, absent in kills:
        res = _run([DVC, "repro"], crashed, check=False, crash_after=spec)
        logs.append(res.stdout + res.stderr)
        assert res.returncode != 0, f"{spec}: the kill did not happen\n{logs[-1][-2000:]}"
        assert f"killing {spec.rpartition(':')[0]} now" in logs[-1]
        assert (crashed / left).is_file(), f"{spec}: no partial work left in {left}"
        assert not (crashed / absent).exists(), f"{spec}: a killed stage left its output {absent}"
    final = _run([DVC, "repro"], crashed)
    logs.append(final.stdout + final.stderr)
    text = "\n".join(logs)
    assert "resuming from checkpoints/train_weak/checkpoint-2" in text
    assert "resuming from checkpoints/align/weak/checkpoint-1" in text
    assert "resuming from checkpoints/label_rm/checkpoint-2" in text
    assert text.count("finished batches read back") >= 3  # generate_pairs, label_weak, evaluate
    left = [p for p in (crashed / "checkpoints").rglob("*") if p.is_file()]
    assert not left, f"work folders are removed once a stage is done: {left}"
    _, first = _tiny_run(root, tmp_path_factory)  # the uninterrupted run (the other worker's; here, if run alone)
    dropped = set(first["sources"]) - set(sources)
    assert dropped and not set(sources) - set(first["sources"]), (sources, first["sources"])
    files = [f for f in DETERMINISTIC if f not in PER_SOURCE]
    assert _digest(crashed, files) == {f: first["digests"][f] for f in files}
    assert (crashed / GENERATIONS).read_text().splitlines() == [
        line for line in first["generations"] if json.loads(line)["model"] not in dropped]
    whole, resumed = first["results"], _results(crashed)
    for m in PER_SOURCE & set(METRICS):  # byte-identical files before: their entries must be exactly equal
        assert resumed.pop(m) == _only_sources(whole[m], dropped), m
    for m in resumed:  # identical in practice; the tolerance is for float noise in the restored optimizer state
        for key, value in whole[m].items():
            if isinstance(value, float):
                assert resumed[m][key] == pytest.approx(value, abs=1e-6), (m, key)
            else:
                assert resumed[m][key] == value, (m, key)
    for m in ("metrics/train_weak.json", "metrics/align/weak.json", "metrics/label_rm.json"):
        assert read_metrics(crashed / m)["resumed_from_step"] in (1, 2)  # bookkeeping: in the .info.json


@tiny_run
def test_push_to_a_remote_and_pull_into_a_clean_checkout(repo, tmp_path):
    """Team workflow: `dvc push` every stage output to a remote (a local directory here; S3/GCS/Azure are the same
    commands with another URL), then `dvc pull` into a checkout that has only the git-tracked files: every output
    comes back byte-identical and the pipeline is up to date, with nothing to rerun."""
    repo, _ = repo
    remote = tmp_path / "remote"
    _run([DVC, "remote", "add", "--local", "-d", "team", str(remote)], repo)  # .dvc/config.local: untracked
    _run([DVC, "push"], repo)
    assert any(p.is_file() for p in remote.rglob("*"))
    clone = tmp_path / "clone"
    clone.mkdir()
    _copy_worktree(repo, clone)  # what `git clone` gives: no models, no data outputs, no cache
    shutil.copytree(repo / ".git", clone / ".git")
    for rel in (".dvc/config", ".dvc/.gitignore", "dvc.lock"):
        shutil.copy2(repo / rel, clone / rel)
    files = DETERMINISTIC + ["models/weak/adapter_model.safetensors", "models/targets/human/model.safetensors"]
    assert not any((clone / f).exists() for f in files if f.startswith(("data/", "models/")))
    _run([DVC, "remote", "add", "--local", "-d", "team", str(remote)], clone)
    _run([DVC, "pull"], clone)
    assert _digest(clone, files) == _digest(repo, files)
    assert "up to date" in _run([DVC, "status"], clone).stdout


@tiny_run
def test_a_study_with_a_teacher_runs_from_the_queue_resumes_and_aggregates(repo, tmp_path):
    """`python -m weakalign.study run -j 2` on the tiny preset: seed 0's main run with a few sources and one weak
    teacher run beside it (D_l's labels half inverted), queued as DVC experiments (each gets a temporary copy of the
    git-tracked files only, so a clean checkout suffices), two at a time. Each run's summary lands in study/runs/;
    the teacher run draws its seed's data (it pairs); a second `run` finds nothing to do; `report` writes
    metrics/study.json in its contract, and `weakalign.aggregate` reads the same experiments from `dvc exp show`.
    One seed, not two: a second seed is a whole pipeline run (about 150 CPU-s), and statistics over seeds are
    tests/test_study.py's (synthetic summaries) and tests/test_aggregate.py's (real experiments of a one-line stage)."""
    repo, _ = repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # Seed 0 is the tiny run: DVC's run cache serves its stages, so only the new arm and the teacher train.
    params["study"] |= {"seeds": [0], "sources": ["human", "weak", "flipped"], "set": {},
                        "teachers": {"noise_50": {"train_weak.label_noise": 0.5}}}
    study_params = tmp_path / "study-params.yaml"  # the pipeline's params.yaml, another study section
    study_params.write_text(yaml.safe_dump(params, sort_keys=False))
    study = [sys.executable, "-m", "weakalign.study", "--params", str(study_params)]
    # No fingerprint here (a second tiny repro, ~6 min): tests/test_fingerprint.py checks that mechanism.
    _run([*study, "run", "-j", "2", "--dvc", DVC, "--no-fingerprint"], repo)
    runs = sorted(p.name for p in (repo / "study/runs/study-params").iterdir())  # named for the params file
    assert runs == ["s0-noise_50.json", "s0.json"]
    s0, teacher = (json.loads((repo / f"study/runs/study-params/{r}").read_text()) for r in ("s0.json", runs[0]))
    assert s0["seed"] == 0 and set(s0["sources"]) == {"human", "weak", "flipped"}
    assert s0["sources"]["flipped"]["label_accuracy"] == 0.0  # every gold label inverted
    assert s0["sources"]["human"]["kl_estimate"] is not None
    assert set(teacher["sources"]) == {"weak"} and teacher["params"]["train_weak.label_noise"] == 0.5
    assert teacher["data"] == s0["data"]  # the same pairs and D_u: the teacher's target pairs with the seed's
    again = _run([*study, "run", "--dvc", DVC, "--no-fingerprint"], repo)
    assert "0 of 2 runs to do" in again.stderr
    _run([*study, "report", "--metrics", str(tmp_path / "study.json"), "--out", str(tmp_path / "study.md"),
          "--plot", str(tmp_path / "plot.json")], repo)
    numbers = json.loads((tmp_path / "study.json").read_text())  # numbers and nulls only: `dvc metrics` reads it
    assert _only_numbers(numbers) and numbers["checks"]["at_least_5_seeds"] == 0
    out = read_metrics(tmp_path / "study.json")  # with its bookkeeping (study.info.json) merged back
    assert out["n_seeds"] == 1 and out["n_runs_missing"] == out["n_runs_stale"] == 0
    for key in ("mean", "lo", "hi"):
        assert key in out["base"]["gold_reward"] and key in out["weak_minus_human"] and key in out["pgr"]
        assert key in out["sources"]["flipped"]["gold_reward"] and key in out["sources"]["weak@noise_50"]["gold_reward"]
    assert set(out["tost"]) >= {"margin", "p", "equivalent"} and "dose_response_spearman" in out
    assert (tmp_path / "study.png").stat().st_size > 1000
    # The same experiments through the sweep aggregator (`make aggregate`): two configurations of one run each.
    md, rows = tmp_path / "sweep.md", tmp_path / "sweep.json"
    metrics = ["metrics/headline.json:agreement", "metrics/headline.json:gold_reward_weak"]  # the declared metric
    _run([sys.executable, "-m", "weakalign.aggregate", "--out-md", str(md), "--out-json", str(rows),
          "--metrics", *metrics], repo)
    got = json.loads(rows.read_text())
    assert sorted(r["metric"] for r in got) == sorted(metrics * 2)
    assert all(r["n"] == 1 and r["mean"] is not None and r["ci_low"] is None for r in got)  # one run: no interval


@tiny_run
def test_changing_an_align_param_leaves_the_weak_teacher_alone(repo):
    repo, _ = repo
    labels = _digest(repo, ["data/labels/weak.jsonl"])
    status = json.loads(_run([DVC, "status", "--json"], repo).stdout)
    assert status == {}
    text = (repo / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["align"]["dpo"]["beta"] = 0.2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = set(json.loads(_run([DVC, "status", "--json"], repo).stdout))
        assert {"align@human", "align@weak"} <= stale
        assert not stale & {"base_model", "generate_pairs", "annotate", "split", "train_weak", "label_weak",
                            "label_rm", "label_judge", "compare"}
        out = _run([DVC, "repro", "align@weak"], repo).stdout  # one target is proof enough (the others: status)
        assert "Running stage 'train_weak'" not in out and "Running stage 'label_weak'" not in out
        assert "Running stage 'align@weak'" in out
        assert _digest(repo, ["data/labels/weak.jsonl"]) == labels
    finally:  # the tiny run as it was, for the tests after this one
        (repo / "params.yaml").write_text(text)
    # Back to the first params, DVC's run cache serves the first align@weak again: nothing trains.
    out = _run([DVC, "repro"], repo).stdout
    assert "Stage 'align@weak' is cached - skipping run" in out and "Running stage" not in out, out[-2000:]
    assert json.loads(_run([DVC, "status", "--json"], repo).stdout) == {}


@pytest.mark.parametrize("rel", ["src/weakalign/modeling/generation.py", "stages/split.py",
                                 "src/weakalign/config/params.py"])
@tiny_run
def test_a_code_change_makes_exactly_the_stages_that_run_that_code_stale(repo, rel):
    """DVC's promise: `dvc status` lists the stages whose code (their script and its import closure, computed by
    scripts/stage_deps.py from the imports, not from dvc.yaml) holds the edited file, and no other stage. Their
    downstream reruns only if their outputs change, as DVC does."""
    import importlib.util

    repo, _ = repo
    spec = importlib.util.spec_from_file_location("stage_deps", repo / "scripts/stage_deps.py")
    stage_deps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage_deps)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    expected = set()
    for name, stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        script = re.search(r"stages/\w+\.py", body["cmd"]).group(0)
        if rel == script or rel in stage_deps.closure(repo / script):
            expected |= {f"{name}@{s}" for s in params["align"]["sources"]} if "foreach" in stage else {name}
    assert expected, f"no stage runs {rel}"

    def stale():
        return set(json.loads(_run([DVC, "status", "--json"], repo).stdout))

    before = stale()  # an earlier test may have left some stages stale on purpose
    path = repo / rel
    text = path.read_text()
    path.write_text(text + "\n# an edit that changes the file's hash\n")
    try:
        after = stale()
    finally:
        path.write_text(text)
    assert after - before == expected - before
    assert not (before - after)
    assert stale() == before


@tiny_run
def test_a_failing_stage_leaves_no_output(repo, tmp_path):
    """A broken line in the raw prompts: a clear error naming file and line, and no ingest output written."""
    repo, _ = repo
    bad = tmp_path / "bad"
    shutil.copytree(repo, bad, ignore=shutil.ignore_patterns("models", ".dvc"))
    prompts = (bad / "data/raw/prompts.jsonl").read_text().splitlines()
    prompts[2] = prompts[2][:-5]
    (bad / "data/raw/prompts.jsonl").write_text("\n".join(prompts) + "\n")
    outs = ("data/prompts/all.jsonl", "data/source/pairs", "metrics/ingest.json")
    for out in outs:
        shutil.rmtree(bad / out) if (bad / out).is_dir() else (bad / out).unlink()
    res = _run([sys.executable, "stages/ingest.py", "--input", "data/raw/prompts.jsonl", "--prompts", outs[0],
                "--pairs", outs[1], "--metrics", outs[2]], bad, check=False)
    assert res.returncode == 2
    assert "data/raw/prompts.jsonl:3: malformed JSON" in res.stderr
    assert not any((bad / out).exists() for out in outs)


@tiny_run
def test_a_failed_stage_loses_no_result(repo):
    """Issue 31, class 5: `dvc repro` outside the venv (`python: not found`, exit 127). DVC removes a stage's
    outputs before it runs; the report's and compare's git-tracked files are `persist` (their stages never use the
    run cache anyway: test_cli), so they stay as they were; a cached stage's metrics file is gone for the moment,
    and the next good `dvc repro` restores the same bytes from DVC's run cache without running the stage."""
    repo, _ = repo
    _run([DVC, "repro"], repo)  # an earlier test may leave stages stale on purpose: start from a clean pipeline
    kept = ["reports/summary.md", "reports/summary.png", "metrics/headline.json", "plots/agreement_by_margin.json"]
    before = _digest(repo, kept + ["metrics/train_weak.json"])
    no_python = dict(_env(), PATH="/usr/bin:/bin")  # the system's: python3, no `python`
    for stage in ("report", "compare"):
        res = subprocess.run([DVC, "repro", "-s", "-f", stage], cwd=repo, capture_output=True, text=True,
                             env=no_python)
        assert res.returncode != 0 and "exited with 127" in res.stdout + res.stderr, res.stderr[-2000:]
        assert _digest(repo, kept) == {k: before[k] for k in kept}, stage
    res = subprocess.run([DVC, "repro", "-s", "-f", "train_weak"], cwd=repo, capture_output=True, text=True,
                         env=no_python)
    assert res.returncode != 0 and not (repo / "metrics/train_weak.json").exists()
    out = _run([DVC, "repro"], repo).stdout
    assert "Stage 'train_weak' is cached - skipping run, checking out outputs" in out, out[-3000:]
    assert _digest(repo, kept + ["metrics/train_weak.json"]) == before
    assert json.loads(_run([DVC, "status", "--json"], repo).stdout) == {}


@tiny_run
def test_a_preset_runs_as_an_experiment_and_leaves_the_tree_clean(repo, root, tmp_path):
    """`make repro PRESET=tiny` (weakalign.preset) in a clean clone of the default: the tiny preset, composed onto
    params.yaml, runs as the DVC experiment `tiny` in a temporary copy; no tracked file changes, and the
    experiment's commit holds the composed params and the run's report and headline.

    The clone shares the tiny run's DVC cache (`.dvc/config.local`, git-ignored): the experiment's params and code
    are the tiny run's, so DVC's run cache serves its stages, as it would a user's second run. What this
    tests is the preset's path; running the tiny pipeline from scratch is the module fixture's (345 s -> ~1 min)."""
    def default(params):
        params.clear()
        params.update(compose(root / "params.yaml"))

    tiny, _ = repo
    repo = _fresh_repo(root, tmp_path / "repo", default)
    _run([DVC, "cache", "dir", "--local", str(tiny / ".dvc" / "cache")], repo)
    out = _run([sys.executable, "-m", "weakalign.preset", "tiny"], repo)
    assert "is cached - skipping run" in out.stdout + out.stderr  # served, not recomputed
    # The default's dvc.lock has no entry for the align@ stages the preset adds: DVC's checkout of them says so,
    # once each, unless weakalign.preset drops that message (no other warning is expected either).
    assert "No file hash info found" not in out.stdout + out.stderr and "WARNING" not in out.stdout + out.stderr
    assert _run(["git", "status", "--porcelain"], repo).stdout == ""
    ref = re.search(r"git show (refs/exps/\S+):reports/summary.md", out.stdout).group(1)
    ran = yaml.safe_load(_run(["git", "show", f"{ref}:params.yaml"], repo).stdout)
    want = compose(root / "presets/tiny.yaml")
    assert {k: v for k, v in ran.items() if k != "study"} == {k: v for k, v in want.items() if k != "study"}
    headline = json.loads(_run(["git", "show", f"{ref}:metrics/headline.json"], repo).stdout)
    assert headline and all(isinstance(v, (int, float)) or v is None for v in headline.values())
    assert "# " in _run(["git", "show", f"{ref}:reports/summary.md"], repo).stdout
    # A stage's results file is a cached out, not in the experiment's commit: the study reads it through DVC's API.
    from weakalign.study.running import read_json

    assert read_json(ref, "metrics/alignment.json", repo=str(repo))["base"]["n_prompts"] > 0


def test_a_local_model_is_a_dependency_dvc_sees(root, tmp_path, tiny_dir):
    """Issue 31, class 4: a local `base.model` lies under local_models/, a dep of every stage that loads a model
    named in params; changed weights make base_model stale and re-run it. A directory elsewhere, or a link to one,
    is refused before anything loads (DVC would not see it change)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_dir, tmp_path / "repo/local_models/tiny")

    def local(params):
        params["base"]["model"] = "local_models/tiny"

    repo = _fresh_repo(root, tmp_path / "repo", local)
    _run([DVC, "repro", "base_model"], repo)
    first = _digest(repo, ["models/base/model.safetensors"])
    assert json.loads(_run([DVC, "status", "--json", "base_model"], repo).stdout) == {}
    weights = repo / "local_models/tiny/model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * 2
    save_file(tensors, weights, metadata={"format": "pt"})
    status = json.loads(_run([DVC, "status", "--json", "base_model"], repo).stdout)
    assert {"changed deps": {"local_models": "modified"}} in status["base_model"], status
    out = _run([DVC, "repro", "base_model"], repo).stdout
    assert "Running stage 'base_model'" in out
    assert _digest(repo, ["models/base/model.safetensors"]) != first

    (repo / "local_models/elsewhere").symlink_to(tiny_dir, target_is_directory=True)
    for ref in (str(tiny_dir), "local_models/elsewhere"):
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["base"]["model"] = ref
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        res = _run([DVC, "repro", "base_model"], repo, check=False)
        assert res.returncode != 0, ref
        assert f"base.model: local model directory {ref!r} lies outside local_models/" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


SHARED_HH = Path(__file__).resolve().parents[2] / "shared/data/hh-rlhf/harmless-base-test-part1.jsonl.gz"


@pytest.mark.skipif(not SHARED_HH.is_file(), reason=f"the real HH-RLHF sample is not at {SHARED_HH} (../shared/data)")
@pytest.mark.whole_run
def test_real_hh_data_runs_end_to_end_with_its_own_labels_and_no_gold(root, tmp_path):
    """data.source jsonl on the first 120 rows of the shared HH-RLHF file, judge none and no SFT, as in
    presets/hh-local.yaml (SFT on HH rows is the paper preset's test): every stage runs; every row is kept or dropped
    with a reason; the human labels are the dataset's; every gold figure is null and the report says why."""
    def hh(params):
        params["data"].update(source="jsonl", path=os.path.relpath(SHARED_HH, tmp_path / "hh"), max_rows=120)
        params["judge"]["name"] = "none"
        params["sft"]["enabled"] = False
        params["align"]["sources"] = ["human", "weak"]
        params["label_rm"]["enabled"] = params["label_judge"]["enabled"] = False
        for section in ("train_weak", "align"):
            params[section]["dpo"]["max_length"] = 192

    repo = _fresh_repo(root, tmp_path / "hh", hh)
    _run([DVC, "repro"], repo)
    m = {name: read_metrics(repo / "metrics" / f"{name}.json")
         for name in ("ingest", "pairs", "annotate", "feedback", "alignment")}
    assert m["ingest"]["n_rows"] == 120 and m["ingest"]["n_pairs"] + sum(m["ingest"]["dropped"].values()) == 120
    train = (repo / "data/prompts/train.jsonl").read_text().splitlines()
    assert m["pairs"]["n_pairs"] + m["pairs"]["dropped"]["prompt_too_long"] == len(train) == 30
    assert m["pairs"]["dropped"]["prompt_too_long"] > 0  # HH prompts are long: counted, not silently lost
    source = {r["id"]: r["human"] for r in map(json.loads, (repo / "data/source/pairs/records.jsonl").read_text().splitlines())}
    for part in ("labeled", "unlabeled"):
        rows = [json.loads(x) for x in (repo / f"data/split/{part}.jsonl").read_text().splitlines()]
        assert rows and all(r["id"].startswith("hh-") and r["human"] == source[r["id"]] for r in rows)
        assert all(r["gold_1"] is None and r["gold_2"] is None for r in rows)
    assert m["annotate"]["gold_judge"] == "none" and m["annotate"]["accuracy_human_vs_gold"] is None
    assert m["feedback"]["agreement_weak_human"] is not None
    assert m["feedback"]["accuracy_weak_vs_gold"] is None and m["feedback"]["gold_backs_weak_when_disagree"] is None
    assert m["alignment"]["gold_judge"] == "none" and m["alignment"]["weak_vs_human_win_rate"] is None
    for name in ("base", "human", "weak"):
        assert m["alignment"][name]["gold_reward_mean"] is None and m["alignment"][name]["n_prompts"] == 10
    assert "No gold judge" in (repo / "reports/summary.md").read_text()
    assert read_metrics(repo / "metrics/sft.json")["enabled"] is False


def _tiny_opt(out: Path, seed: int) -> str:
    """A randomly initialised OPT (the paper's model family) of about 1.6 M parameters, saved as a local model
    directory, with a tokenizer that has no chat template, as OPT's has none."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    from weakalign.modeling.models import TINY, load_tokenizer

    tok = load_tokenizer(TINY)
    tok.chat_template = None
    torch.manual_seed(seed)
    model = OPTForCausalLM(OPTConfig(
        vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        word_embed_proj_dim=32, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    assert not (out / "chat_template.jinja").exists()
    return str(out)


@pytest.mark.skipif(not SHARED_HH.is_file(), reason=f"the shared HH-RLHF sample is not at {SHARED_HH}")
@pytest.mark.whole_run
def test_the_paper_preset_runs_offline_on_stand_ins(root, tmp_path):
    """presets/paper-hh-opt.yaml, with its Hub models and dataset swapped for local stand-ins of the same kind (tiny
    OPTs without a chat template as target and weak LLM, the shared HH-RLHF sample, a tiny local reward model as
    gold judge) and its sizes cut: every stage runs, SFT fine-tunes both starting points, prompts use the plain HH
    format, and the gold judge scores every model."""
    from weakalign.modeling.models import PLAIN_TEMPLATE, reward_model_from_lm

    models = tmp_path / "paper" / "local_models"  # where a local model must lie (weakalign.config.refs.LOCAL_MODELS)
    _tiny_opt(models / "opt-target", 0), _tiny_opt(models / "opt-weak", 1)
    rm, rm_tok = reward_model_from_lm(str(models / "opt-target"), seed=0)
    rm.save_pretrained(models / "rm", safe_serialization=True)
    rm_tok.save_pretrained(models / "rm")

    def paper(params):
        preset = compose(root / "presets/paper-hh-opt.yaml")
        params.clear()
        params.update(preset)
        params["base"]["model"], params["train_weak"]["model"] = "local_models/opt-target", "local_models/opt-weak"
        params["data"].update(source="jsonl", name=None, path=os.path.relpath(SHARED_HH, tmp_path / "paper"),
                              max_rows=120)
        params["judge"].update(model="local_models/rm", batch_size=8)
        params["holdout"].update(n_test=10, n_train=30)
        for section, cfg in (("sft", "sft"), ("train_weak", "dpo"), ("align", "dpo")):
            params[section][cfg].update(max_steps=2, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                        max_length=192, activation_checkpointing=False, logging_steps=1, save_steps=1)
        params["evaluate"].update(max_new_tokens=8, batch_size=16)

    repo = _fresh_repo(root, tmp_path / "paper", paper)
    out = _run([DVC, "repro"], repo)
    assert "Running stage 'sft'" in out.stdout and "Running stage 'align@weak'" in out.stdout
    sft = read_metrics(repo / "metrics/sft.json")
    assert sft["enabled"] and sft["target_steps"] == 2 and sft["weak_steps"] == 2  # the weak LLM is another model
    assert (repo / "models/sft/weak/model.safetensors").is_file()
    assert (repo / "models/base/chat_template.jinja").read_text() == PLAIN_TEMPLATE
    al = read_metrics(repo / "metrics/alignment.json")
    assert al["gold_judge"] == "reward_model:local_models/rm"
    for name in ("base", "human", "weak"):
        assert al[name]["gold_reward_mean"] is not None and al[name]["n_prompts"] == 10
    assert read_metrics(repo / "metrics/feedback.json")["agreement_weak_human"] is not None


@pytest.mark.whole_run
def test_training_stages_run_in_two_processes_under_accelerate_launch(root, tmp_path, tmp_path_factory):
    """base.num_processes: 2 on the tiny preset. Plain DDP: sft and train_weak (LoRA) relaunch themselves under
    `accelerate launch` (two CPU processes, gloo) and the first process alone writes the outputs. Then DeepSpeed
    ZeRO-2 (base.accelerate_config: presets/accelerate/deepspeed-zero2.yaml; DeepSpeed's CPU accelerator, gloo):
    train_weak killed after its second checkpoint, which holds one optimizer-state shard per process, resumes from
    it in both processes.

    The stages before sft do not depend on the number of processes: DVC's run cache restores them from the tiny
    run's cache (so this test waits for the tiny run, or builds it when run alone)."""
    def two(params):
        params["base"]["num_processes"] = 2

    repo = _fresh_repo(root, tmp_path / "ddp", two)
    tiny, _ = _tiny_run(root, tmp_path_factory)
    shutil.copytree(tiny.parent / "first-cache", repo / ".dvc/cache", copy_function=os.link)
    out = _run([DVC, "repro", "train_weak"], repo)
    for name in ("base_model", "ingest", "holdout", "generate_pairs", "annotate", "split"):
        assert f"Stage '{name}' is cached - skipping run" in out.stdout, out.stdout[-3000:]
    assert out.stderr.count("launching 2 processes") == 2, out.stderr[-3000:]
    assert "--multi_gpu" in out.stderr and "--config_file" not in out.stderr
    weak = read_metrics(repo / "metrics/train_weak.json")
    sft = read_metrics(repo / "metrics/sft.json")
    assert weak["num_processes"] == 2 and sft["target_num_processes"] == 2
    # 10 labeled pairs, 4 per process and step: 2 processes take 8 pairs a step; max_steps still bounds the run.
    assert weak["steps"] == 3 and sft["target_steps"] == 2
    assert (repo / "models/weak/adapter_model.safetensors").is_file()
    assert (repo / "dvclive/train_weak/plots/metrics/loss.tsv").is_file()
    assert not (repo / "checkpoints/train_weak").exists()  # finished: the work folder is gone

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["base"]["accelerate_config"] = "presets/accelerate/deepspeed-zero2.yaml"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # -s: train_weak alone (the SFT model above stays its starting point), killed after checkpoint 2 in both processes.
    killed = _run([DVC, "repro", "-s", "train_weak"], repo, check=False, crash_after="train_weak:2")
    assert killed.returncode != 0 and "killing train_weak now" in killed.stderr, killed.stderr[-3000:]
    assert "--config_file presets/accelerate/deepspeed-zero2.yaml" in killed.stderr
    assert not (repo / "models/weak").exists()
    shards = sorted(p.name for p in (repo / "checkpoints/train_weak/checkpoint-2").glob("global_step2/*optim_states.pt"))
    assert len(shards) == 2 and "zero_pp_rank_0" in shards[0] and "zero_pp_rank_1" in shards[1], shards  # ZeRO
    out = _run([DVC, "repro", "-s", "train_weak"], repo)
    assert out.stderr.count("resuming from checkpoints/train_weak/checkpoint-2") == 2, out.stderr[-3000:]
    weak = read_metrics(repo / "metrics/train_weak.json")
    assert weak["num_processes"] == 2 and weak["steps"] == 3 and weak["resumed_from_step"] == 2
    assert (repo / "models/weak/adapter_model.safetensors").is_file()
    assert not (repo / "checkpoints/train_weak").exists()


@tiny_run
def test_a_tiny_repro_logs_no_warning_from_weakalign(repo):
    """The tiny preset is sized so that every training step moves (whole-set batches, no warmup): a warning from
    the project's own code in a tiny run is then a regression, not noise (third-party notices are not checked)."""
    _, first = repo
    ours = [line for line in (first.stdout + first.stderr).splitlines()
            if re.search(r"\d\d:\d\d:\d\d weakalign\S* (WARNING|ERROR)", line)]
    assert not ours, "\n".join(ours)


@tiny_run
def test_a_tiny_repro_declares_no_empty_output(repo):
    """An output a stage may leave without rows is a folder holding a README then (records.io.write_records): DVC
    warned "'data/source/pairs.jsonl' is empty" four times in a tiny repro before, ten times in a default one."""
    path, first = repo
    assert "is empty" not in first.stdout + first.stderr
    assert [p.name for p in (path / "data/source/pairs").iterdir()] == ["README.md"]  # the sandbox: no source pairs
