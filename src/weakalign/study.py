r"""The study: the whole pipeline over seeds, every feedback source beside its floor and ceiling, with seeds (training
runs), not test prompts, as the unit of analysis.

    make study                                  # run every missing run, then the report
    python -m weakalign.study plan              # the runs and their `dvc exp run -S` params
    python -m weakalign.study run [--commit] [--only s0 s1-dl_32]
    python -m weakalign.study report            # metrics/study.json, reports/study.md (+ .png), plots/study.json

`params.yaml: study` says what runs (weakalign.params.Study). Each run is one queued `dvc exp run` of the pipeline
with its params set (`--jobs` at a time), so DVC's run cache restores every stage a run shares with an earlier one (the teacher runs of a
seed reuse its pairs, labels and the human target). When a run ends its summary goes to `study/runs/<params label>/<run>.json`,
with a digest of its params and the code it ran (src/, stages/, dvc.yaml). A summary is current while its params are
today's and its code gives today's results: the same code, or code whose result fingerprint (weakalign.fingerprint:
a tiny-preset repro on the same machine kind) is the same, so a fix that changes no result keeps the study. `run`
measures the fingerprints it needs and skips current runs, so a killed study continues where it stopped, and with
`--commit` every summary is committed as it lands.
`report` reads only current summaries, lists missing and stale ones, and never reruns anything.

What the report computes, over seeds (weakalign.stats): per-seed paired contrasts on the same test prompts (each
source minus the base, each source minus the `random` target of its seed - the floor -, weak minus human), their
mean and 95% t-interval; gold reward per nat of drift; TOST of weak against human within a share of the
human - random gap (`equivalence`) and within `study.tost_margin` (`tost`); Holm-adjusted p-values over every
contrast it reports; the performance gap recovered against human and gold over the base and against human over the
random floor (Fieller intervals); the dose-response of gold reward on label accuracy (Spearman, and the per-seed
slope over the calibration sources); and the calibration checks that must pass before a weak-vs-human claim means
anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import fingerprint
from .feedback import is_calibration, on_line, table_order
from .fingerprint import NOT_PIPELINE, code_digest, machine
from .io import atomic_file, info_path, write_json
from .params import Params, compose, load_params, read_yaml
from .report import md
from .stats import holm, mean_sem, paired_contrast, pgr, r, spearman, t_interval, tost_paired

log = logging.getLogger("weakalign.study")

RUNS = Path("study/runs")


def kind(source: str) -> str:
    """What an arm is, for the figure's legend: a calibration source, the human labels, the weak teacher or a
    weaker one."""
    return "calibration" if is_calibration(source) else "teacher" if source.startswith("weak@") else \
        "human" if source == "human" else "weak"


# --- the plan -----------------------------------------------------------------------------------------------------

def plan(params: Params, extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """run name -> the params it sets: `s<seed>` aligns every study source, `s<seed>-<teacher>` only `weak`.
    Every seed's main run comes first (the calibration over seeds fills in soonest), then the teacher runs.
    `extra`: params every run sets before the study's own (file_overrides)."""
    st, extra = params.study, extra or {}
    runs = {f"s{seed}": {**extra, **st.set, "align.sources": list(st.sources), "base.seed": seed}
            for seed in st.seeds}
    for seed in st.seeds:
        for name, overrides in st.teachers.items():
            runs[f"s{seed}-{name}"] = {**extra, **st.set, **overrides, "align.sources": ["weak"], "base.seed": seed}
    return runs


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def file_overrides(params_file: Path) -> dict[str, Any]:
    """Where a params file other than ./params.yaml (a preset) differs from it, as `-S` params: the experiments
    run on params.yaml, so a study of presets/tone.yaml sets its judge and prompts in every run."""
    default = Path("params.yaml")
    if params_file.resolve() == default.resolve():
        return {}
    mine, theirs = (_leaves({k: v for k, v in compose(f).items() if k != "study"})
                    for f in (params_file, default))
    return {k: v for k, v in mine.items() if k not in theirs or theirs[k] != v}


def runs_dir(params_file: Path) -> Path:
    """study/runs/default for ./params.yaml, study/runs/<stem> for another params file (presets/tone.yaml: tone)."""
    same = params_file.resolve() == Path("params.yaml").resolve()
    return RUNS / ("default" if same else params_file.stem)


def _flow(value: Any) -> str:
    """A value as `dvc exp run -S` parses it (Hydra's override grammar: lists as [a, b], null, true; a string
    with anything but letters, digits and `_.-` quoted, so `base@layers=8` or `embedded:smollm2` stay strings)."""
    if isinstance(value, str) and (not re.fullmatch(r"[A-Za-z0-9_.-]+", value)
                                   or yaml.safe_load(value) != value):  # `1e-3`, `null`, `true` stay strings
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def effective_params(overrides: dict[str, Any]) -> dict:
    """./params.yaml (without `study`) as one run of the study sees it: with the run's params set."""
    raw = read_yaml("params.yaml")
    raw.pop("study", None)
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return raw


def run_digest(params_file: Path, overrides: dict[str, Any], code: str) -> str:
    """The identity of one run's result: the params it runs with (params.yaml with its overrides) and the code.
    `params_file` is kept for the call sites; a preset enters through the overrides (file_overrides)."""
    blob = json.dumps([effective_params(overrides), code], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def params_digest(overrides: dict[str, Any]) -> str:
    """The identity of one run's params: params.yaml (without `study`) with its overrides. With the code's result
    fingerprint (weakalign.fingerprint) it decides whether a run's summary is current."""
    return hashlib.sha256(json.dumps(effective_params(overrides), sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_runs(runs: dict[str, dict[str, Any]]) -> None:
    """Every planned run's params must validate before anything is queued (a typo in `study.set`, a teacher
    that sets n_labeled beside a labeled_fraction): one clear error instead of a failed experiment an hour in."""
    from .params import ParamsError, parse_params

    for run, overrides in runs.items():
        raw = effective_params(overrides)
        raw["study"] = {"teachers": {}}  # a run's own params: no stage reads `study`, and its teachers are the plan
        try:
            parse_params(raw, f"study run {run}")
        except ParamsError as e:
            raise ValueError(str(e)) from None


def input_file(overrides: dict[str, Any]) -> dict[str, str] | None:
    """The local prompt or preference file a run reads (`data.path`) and its md5, or None where it reads none
    (a Hub dataset). Not in the digest: its content changes a run's result as much as the code does, and the
    digest of summaries made before this was recorded must stay what it was."""
    path = Path(str(effective_params(overrides).get("data", {}).get("path") or ""))
    if not path.is_file():
        return None
    return {"path": path.as_posix(), "md5": hashlib.md5(path.read_bytes()).hexdigest()}


def _same_input(summary: dict, now: dict[str, str] | None) -> bool:
    """Whether the run read the file it would read now: by the md5 it recorded, or for a summary older than that
    record by git (the file at the run's commit against the working tree); a file git does not track, unrecorded,
    cannot be checked and is taken as the same."""
    if now is None:
        return True
    recorded = summary.get("input")
    if recorded:
        return recorded == now
    commit = summary.get("commit")
    if not commit or subprocess.run(["git", "ls-files", "--error-unmatch", now["path"]],
                                    capture_output=True).returncode != 0:
        return True
    return subprocess.run(["git", "diff", "--quiet", commit, "--", now["path"]], capture_output=True).returncode == 0


def _current(runs: Path, run: str, digest: str, overrides: dict[str, Any] | None = None,
             code: str | None = None, records: dict | None = None) -> dict | None:
    """The run's summary if it is current, else None. Current: made with these params (its params digest) by code
    whose results are today's (the same code, or equal fingerprints: weakalign.fingerprint, given `code` and the
    `records`), and, given the run's `overrides`, from the same input file. A summary older than the fingerprint
    record is current only with the same params and code (`digest`)."""
    path = runs / f"{run}.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if "params_digest" in summary and code is not None and overrides is not None:
        if summary["params_digest"] != params_digest(overrides) or \
                not fingerprint.same_results(summary.get("code"), code, records or {}):
            return None
    elif summary.get("digest") != digest:
        return None
    return summary if overrides is None or _same_input(summary, input_file(overrides)) else None


# --- running ------------------------------------------------------------------------------------------------------

def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def _git_commit(paths: list[str], message: str, tries: int = 60) -> None:
    """Commit `paths` alone. The study commits for hours while people work in the same checkout: a git command of
    theirs holding the index lock makes it wait and retry (a second at a time), not end the study."""
    for i in range(tries):
        if subprocess.run(["git", "add", *paths], capture_output=True).returncode == 0:
            if subprocess.run(["git", "diff", "--cached", "--quiet", "--", *paths]).returncode == 0:
                return  # the same bytes as committed: nothing to record
            if subprocess.run(["git", "commit", "-q", "-m", message, "--", *paths],
                              capture_output=True).returncode == 0:
                return
        if i == tries - 1:
            raise RuntimeError(f"study: could not commit {', '.join(paths)} (git index locked for {tries} s?)")
        time.sleep(1)


def _uncommitted(params_file: Path, inputs: list[str] = ()) -> list[str]:
    """Files that decide a run's result (the pipeline's code, dvc.yaml, params, the runs' input files) and differ
    from HEAD."""
    paths = ["src/weakalign", "stages", "dvc.yaml", "params.yaml", "pyproject.toml"]
    for f in [params_file, *map(Path, inputs)]:
        if f.resolve().is_relative_to(Path.cwd().resolve()):  # a file outside the repo has no HEAD
            paths.append(str(f))
    out = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line[3:] for line in out.splitlines()
            if not any(line[3:].endswith(n) for n in NOT_PIPELINE)]


def _exp_ref(name: str) -> str | None:
    refs = _git("for-each-ref", "--format=%(refname)", "refs/exps").split()
    return next((x for x in refs if x.rsplit("/", 1)[-1] == name), None)


def baseline(ref: str | None) -> str | None:
    """The commit an experiment ran on: DVC files it under refs/exps/<sha[:2]>/<sha[2:]>/<name>."""
    parts = (ref or "").split("/")
    return parts[2] + parts[3] if len(parts) == 5 and parts[:2] == ["refs", "exps"] else None


def _commit_of(summary: dict) -> str | None:
    if summary.get("commit"):
        return summary["commit"]
    try:
        return baseline(_exp_ref(summary["experiment"])) if summary.get("experiment") else None
    except (subprocess.CalledProcessError, OSError):  # not a git checkout, or git absent
        return None


def _queued(dvc: str, prefix: str = "study-") -> dict[str, str]:
    """Task name -> status (Queued, Running, Failed, ...) of the tasks in DVC's experiment queue (the study's:
    names starting with `prefix`)."""
    out = subprocess.run([dvc, "queue", "status"], capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    tasks = {r[1]: r[-1] for r in rows if len(r) >= 4 and r[1].startswith(prefix)}
    # A task still "Running" while no worker is active is a leftover of a killed study (the session, the machine
    # or the worker died mid-run): DVC never finishes it nor runs it again, so it is marked failed here and the
    # caller queues the run afresh; its finished stages come back from the run cache.
    dead = [n for n, status in tasks.items() if status == "Running"]
    if dead and re.search(r"Worker status: 0 active", out):
        for name in dead:
            log.warning("study: %s was left running by a killed study (no worker is active): queued again", name)
            subprocess.run([dvc, "queue", "kill", name], capture_output=True)
            tasks[name] = "Failed"
    return tasks


WORKER_GONE_CHECKS = 18  # 3 minutes of 10 s checks: a new worker writes its pid file within seconds


def _queue_worker_gone(celery: Path = Path(".dvc/tmp/exps/celery")) -> bool:
    """True when DVC's queue workers have pid files and none of them is alive (a zombie counts as dead). Read from
    the files, not `dvc queue status`, which writes messages into the same broker. No pid file: not known, False."""
    pids = [int(t) for t in (p.read_text().strip() for p in celery.glob("dvc-exp-worker-*.pid")) if t.isdigit()]
    if not pids:
        return False

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # Linux: a zombie still answers kill(0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            return True  # no /proc (macOS), or it went this instant: the next check sees it
        return state != "Z"

    return not any(alive(pid) for pid in pids if pid > 0)


def queue_order(want: list[str], queued: dict[str, str]) -> tuple[list[str], list[str]]:
    """Which study tasks to drop from DVC's queue and which to queue, in order, so that the queue holds the runs
    still to do (`want`, in plan order, none of them running) in plan order.

    DVC runs queued tasks oldest first, and lists them in that order (`queued` keeps the listing's order). The
    longest run of `want` that already waits at the head of the queue stays; every later run is queued (again)
    behind it. So a run whose task died (marked failed by `_queued`) goes back to its place in the plan instead of
    behind every other task, and seeds finish before the teacher runs."""
    waiting = [n for n, status in queued.items() if status == "Queued" and n in want]
    keep = 0
    while keep < min(len(want), len(waiting)) and want[keep] == waiting[keep]:
        keep += 1
    redo = want[keep:]
    return [n for n in redo if n in queued], redo


def _show_json(ref: str, path: str) -> dict:
    return json.loads(_git("show", f"{ref}:{path}"))


# The outs whose hashes say which data a run drew: its sampled pairs and its D_u (human labels included).
DRAW_OUTS = ("data/pairs.jsonl", "data/split/unlabeled.jsonl")


def data_hashes(ref: str) -> dict[str, str | None]:
    """md5 of the run's DRAW_OUTS, from its experiment's dvc.lock."""
    lock = yaml.safe_load(_git("show", f"{ref}:dvc.lock")) or {}
    found: dict[str, str | None] = dict.fromkeys(DRAW_OUTS)
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") in found:
                found[out["path"]] = out.get("md5")
    return found


def summarise(ref: str, run: str, overrides: dict[str, Any], digest: str) -> dict:
    """The few numbers of one finished run that the study needs, read from its experiment commit, with the data it
    drew (hashes) and the machine it ran on."""
    alignment = _show_json(ref, "metrics/alignment.json")
    feedback = _show_json(ref, "metrics/feedback.json")
    sources = {}
    for s in overrides["align.sources"]:
        a, f = alignment[s], feedback.get("sources", {}).get(s, {})
        sources[s] = {"gold_reward": a["gold_reward_mean"], "gain_vs_base": a["gain_vs_base"],
                      "win_rate_vs_base": a["win_rate_vs_base"], "kl_estimate": a.get("kl_estimate"),
                      "heldout_accuracy": a.get("heldout_accuracy"), "label_accuracy": f.get("label_accuracy"), "agreement_human": f.get("agreement_human"),
                      "n_pairs": f.get("n_pairs")}
    return {"run": run, "seed": overrides["base.seed"], "digest": digest, "experiment": ref.rsplit("/", 1)[-1],
            "commit": baseline(ref),
            "params": overrides, "base": {"gold_reward": alignment["base"]["gold_reward_mean"]},
            "agreement_weak_human": feedback.get("agreement_weak_human"),
            "accuracy_weak_vs_gold": feedback.get("accuracy_weak_vs_gold"), "sources": sources,
            "data": data_hashes(ref), "machine": machine()}


def _enqueue(dvc: str, pending: dict[str, str], todo: dict[str, dict], guard=lambda: None) -> None:
    """Put the study's unfinished runs (`pending`: experiment name -> run) in DVC's queue, in plan order.
    `guard()` runs before each task is queued and raises if the pipeline is no longer what the summaries name."""
    tasks = _queued(dvc, prefix="")  # one `dvc queue status` for all three decisions below
    queued = {n: status for n, status in tasks.items() if n.startswith("study-")}
    # Finished in an earlier, interrupted study (only its summary is missing), or running: no new task.
    want = [n for n in pending if _exp_ref(n) is None and queued.get(n) != "Running"]
    remove, add = queue_order(want, queued)
    if remove:  # failed in an interrupted study, or waiting out of plan order
        log.info("study: queueing %d runs again, in plan order (%s)", len(remove),
                 ", ".join(pending[n] for n in remove))
        subprocess.run([dvc, "queue", "remove", *remove], stdout=subprocess.DEVNULL)
    for name in add:
        guard()
        run = pending[name]
        sets = sum((["-S", f"{k}={_flow(v)}"] for k, v in todo[run].items()), [])
        if subprocess.run([dvc, "exp", "run", "--queue", "-n", name, *sets]).returncode != 0:
            raise ValueError(f"dvc could not queue run {run} ({name}); its params: {' '.join(sets)}")
    # `--run-all` runs every queued task: drop the study's tasks that this plan no longer has (other params or
    # code) and refuse to run someone else's.
    stale = [n for n, status in queued.items() if n not in pending and status == "Queued"]
    if stale:
        subprocess.run([dvc, "queue", "remove", *stale], stdout=subprocess.DEVNULL)
    foreign = [n for n, status in tasks.items() if n not in queued and status == "Queued"]
    if foreign:
        raise ValueError(f"DVC's queue holds other experiments ({', '.join(foreign)}); `dvc exp run --run-all` "
                         "would run them too: run or remove them first (`dvc queue remove --queued`)")


def _run_queue(dvc: str, jobs: int, collect) -> bool:
    """`dvc exp run --run-all`, calling `collect` every 10 s; stop it if DVC's queue worker is gone for
    WORKER_GONE_CHECKS checks running, and return whether that happened."""
    t0 = time.perf_counter()
    worker = subprocess.Popen([dvc, "exp", "run", "--run-all", "-j", str(jobs)])
    gone = 0  # consecutive checks that found no live queue worker
    while worker.poll() is None and gone < WORKER_GONE_CHECKS:
        time.sleep(10)
        collect()
        gone = gone + 1 if _queue_worker_gone() else 0
    if worker.poll() is None:
        worker.terminate()
        worker.wait()
    collect()
    log.info("study: queue done in %.0f s (exit %d)", time.perf_counter() - t0, worker.returncode)
    return gone >= WORKER_GONE_CHECKS


def _fingerprints(out_dir: Path, runs: dict[str, dict[str, Any]], code: str, dvc: str, commit: bool) -> None:
    """Record the result fingerprints that decide which runs are current (weakalign.fingerprint): HEAD's on this
    machine (today's runs will be compared by it), and that of each code version whose runs have today's params but
    no fingerprint on this machine kind (measured at the commit they ran on). Committed with --commit."""
    kind, measured = fingerprint.machine_kind(), []
    wanted = {code: "HEAD"}
    for run, overrides in runs.items():
        path = out_dir / f"{run}.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        if summary.get("params_digest") == params_digest(overrides) and summary.get("code") not in (None, code):
            wanted.setdefault(summary["code"], summary.get("commit"))
    for c, rev in wanted.items():
        if rev and kind not in fingerprint.load().get(c, {}):
            log.info("study: measuring the result fingerprint of code %s (commit %s; tiny preset, ~6 min)", c, rev)
            fingerprint.ensure(rev, c, dvc, kind)
            measured.append(c)
    if measured and commit:
        _git_commit([str(fingerprint.RECORDS)], f"study: result fingerprints of code {', '.join(measured)}")


def run_all(params: Params, params_file: Path, only: list[str] | None, commit: bool, dvc: str, jobs: int,
            fingerprints: bool = True) -> int:
    """Queue every planned run whose summary is missing or stale, run the queue `jobs` at a time, and write each
    run's summary as soon as its experiment exists; return how many runs did not finish."""
    runs, out_dir = plan(params, file_overrides(params_file)), runs_dir(params_file)
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise ValueError(f"--only: no run named {unknown[0]!r}; the plan has {', '.join(runs)}")
        runs = {k: v for k, v in runs.items() if k in only}
    inputs = {k: input_file(v) for k, v in runs.items()}  # now, like the digests below
    input_paths = sorted({i["path"] for i in inputs.values() if i})
    # Digests once, now: params.yaml or the code may be edited while the queue runs (hours); a run's summary must
    # name what it ran with, which is HEAD at queue time.
    code = code_digest()

    def guard() -> None:
        """A queued experiment copies the working tree as it is at that moment, uncommitted edits included, so
        the pipeline must be the committed code named `code` whenever a task is queued: at the start, and again
        before each task (the fingerprint takes minutes first, and a dead worker's runs are queued hours later)."""
        dirty = _uncommitted(params_file, input_paths)
        if dirty:
            raise ValueError(f"uncommitted changes to {', '.join(dirty[:3])}: a queued experiment copies the "
                             "working tree, so the study's record would not describe what ran; commit or stash, "
                             "then `study run` again (it keeps every finished run)")
        if code_digest() != code:
            raise ValueError(f"the pipeline's code changed from {code} to {code_digest()} since this study "
                             "started (a commit while it queued): `study run` again to queue runs under the new code")

    guard()
    digests = {k: run_digest(params_file, v, code) for k, v in runs.items()}
    pdigests = {k: params_digest(v) for k, v in runs.items()}
    if fingerprints:
        _fingerprints(out_dir, runs, code, dvc, commit)
    records = fingerprint.load()
    todo = {k: v for k, v in runs.items() if _current(out_dir, k, digests[k], v, code, records) is None}
    log.info("study: %d of %d runs to do (%s)", len(todo), len(runs), ", ".join(todo) or "none")
    # Every run keeps the stage commands of params.yaml (no path is overridden), so DVC's run cache serves a run's
    # finished stages to any later run with the same inputs, a rerun after a kill and `dvc repro` in the workspace
    # (the seed-0 run computes the default's targets). A killed run loses only the stage it was in.
    check_runs(todo)
    pending = {f"study-{run}-{digests[run][:8]}": run for run in todo}  # experiment name -> run

    def collect() -> None:
        for name, run in list(pending.items()):
            ref = _exp_ref(name)
            if ref is None:
                continue
            overrides = todo[run]
            write_json(out_dir / f"{run}.json", summarise(ref, run, overrides, digests[run])
                       | {"input": inputs[run], "code": code, "params_digest": pdigests[run]})
            log.info("study: %s finished (%d to go)", run, len(pending) - 1)
            if commit:
                path = str(out_dir / f"{run}.json")
                _git_commit([path], f"study: run {run} ({name})")
            del pending[name]

    for _ in range(3):  # DVC's queue worker can die under a live `dvc exp run`: start it again, twice
        _enqueue(dvc, pending, todo, guard)
        collect()
        if not pending or not _run_queue(dvc, jobs, collect):
            break
        log.error("study: DVC's queue worker is gone while `dvc exp run --run-all` waits on (seen on 2026-12-02: "
                  "kombu's file broker read a half-written message); starting it again with %d runs to do",
                  len(pending))
    for name, run in pending.items():
        log.error("study: %s did not finish (experiment %s); `study run` queues it again", run, name)
    return len(pending)


# --- the analysis -------------------------------------------------------------------------------------------------

def _interval(xs: list[float]) -> dict:
    m, lo, hi = t_interval(xs)
    return {"mean": r(m), "lo": r(lo), "hi": r(hi)}


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return r(sum(xs) / len(xs)) if xs else None


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares line gold reward = a + b * label accuracy through one seed's points, as (a, b); None below 3
    points (two points always lie on a line, so they show nothing) or with a single accuracy."""
    from scipy.stats import linregress

    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    fit = linregress([x for x, _ in points], [y for _, y in points])
    return float(fit.intercept), float(fit.slope)


def noise_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """fit_line through one seed's calibration points, or None where it cannot be inverted (no line, or a slope
    that is not positive)."""
    line = fit_line(points)
    return line if line is not None and line[1] > 0 else None


def seed_points(arms: dict[str, list], accuracy: dict[str, list], names: list[str], i: int) -> list[tuple]:
    """(label accuracy, gold reward) of the arms `names` on seed i, where both are known."""
    return [(accuracy[n][i], arms[n][i]) for n in names if accuracy[n][i] is not None and arms[n][i] is not None]


def effective_accuracies(arms: dict[str, list], accuracy: dict[str, list]) -> dict[str, list[float | None]]:
    """Per seed, the accuracy that gold labels with random flips would need to give an arm's gold reward.

    Within one seed, the calibration arms from the coin (accuracy 0.5) to gold (1.0) - random, noisy_gold_NN,
    gold; `flipped` lies outside the range an arm is compared in - give a line of gold reward on label accuracy;
    an arm's effective accuracy is where its gold reward meets that line. For `human` it answers the study's
    question: how accurate must labels be to do as well as the human labels? Extrapolated, not clipped."""
    cal = [n for n in arms if on_line(n)]
    out: dict[str, list[float | None]] = {}
    for name in arms:
        if is_calibration(name):
            continue
        per_seed = []
        for i, g in enumerate(arms[name]):
            line = noise_line(seed_points(arms, accuracy, cal, i))
            per_seed.append(None if line is None or g is None else (g - line[0]) / line[1])
        out[name] = per_seed
    return out


def _entry(c: dict) -> dict:
    """A paired_contrast for the metrics file: mean, interval and p rounded, and n."""
    return {k: r(c[k]) for k in ("mean", "lo", "hi", "p")} | {"n": c["n"]}


def paired_t(a: list[float | None], b: list[float | None]) -> float | None:
    """The paired t statistic of a - b over the seeds that have both, mean / standard error (stats.mean_sem): the
    statistic of paired_contrast's p. None below 2 seeds or without spread (then it is infinite, and a metrics file
    holds no infinity). Here, not in stats.py: stats.py is pipeline code, in every run's digest."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if len(diffs) < 2 or statistics.stdev(diffs) == 0:  # paired_contrast's test for "no spread"
        return None
    m, se = mean_sem(diffs)
    return m / se


def _versus_random(out: dict, arms: dict) -> tuple[list[tuple[tuple, float | None]], dict[str, dict]]:
    """Every arm but `random` minus the `random` arm of the same seed (same D_u, same test prompts) into
    `sources.<s>.minus_random`: the floor is the target aligned on coin flips, not the base, since DPO on labels
    that carry nothing still moves the policy and costs gold reward through drift. Returns the contrasts Holm
    adjusts over and the unrounded contrasts by arm."""
    family, raw = [], {}
    for name in [n for n in arms if n != "random"]:
        c = raw[name] = paired_contrast(arms[name], arms["random"])  # an unpaired teacher seed is None: dropped
        out["sources"][name]["minus_random"] = _entry(c) | {"t": r(paired_t(arms[name], arms["random"]))}
        family.append((("sources", name, "minus_random"), c["p"]))
    return family, raw


def _equivalence(diffs: list[float], gap: dict | None, st) -> dict:
    """TOST of weak - human (`diffs`, paired by seed) within +-margin, the margin a share
    (`study.equivalence_margin_fraction`) of what human labels add over coin flips, |mean human - random|
    (`gap`, a paired_contrast): "as good as human" is read on the scale of human's own effect. Where that gap's
    interval is not above 0 the margin measures nothing, and random labels could pass as "equivalent to human":
    then `equivalent` is False and `note` says why."""
    frac = st.equivalence_margin_fraction
    out = {"margin_fraction": frac, "margin": None, "lo90": None, "hi90": None, "p": None, "equivalent": False}
    if gap is None or gap["mean"] is None:
        return out | {"note": "no human − random contrast (needs the human and random arms)"}
    margin = frac * abs(gap["mean"])
    t = tost_paired(diffs, margin, st.alpha)
    meaningful = gap["lo"] is not None and gap["lo"] > 0
    note = None if meaningful else (
        "human − random has no interval yet" if gap["lo"] is None
        else "human − random's interval is not above 0, so a margin drawn from it means nothing")
    return out | {"margin": r(margin), "lo90": r(t["lo"]), "hi90": r(t["hi"]), "p": r(t["p"]),
                  "equivalent": bool(t["equivalent"]) and meaningful, "note": note}


def _pgr_entry(g: dict) -> dict:
    return {"mean": r(g["pgr"]), "lo": r(g["lo"]), "hi": r(g["hi"]), "note": g["reason"]}


def _weak_vs_human(out: dict, arms: dict, base: list, st, human_minus_random: dict | None
                   ) -> list[tuple[tuple, float | None]]:
    """The paper's comparison into `out`: weak (and every weak@teacher) minus human paired by seed; TOST of weak
    against human within the fixed `study.tost_margin` (`tost`, kept for comparison) and within a share of the
    human - random gap (`equivalence`, the verdict); PGR with human and with gold as the ceiling over the base, and
    with human as the ceiling over the random floor (`pgr_random`). Returns the contrasts Holm adjusts over."""
    family = []
    for name in [n for n in arms if n == "weak" or n.startswith("weak@")]:
        c = paired_contrast(arms[name], arms["human"])
        if name == "weak":
            out["weak_minus_human"] = _entry(c)
            family.append((("weak_minus_human",), c["p"]))
        else:
            out["sources"][name]["minus_human"] = _entry(c)
            family.append((("sources", name, "minus_human"), c["p"]))
    diffs = [w - h for w, h in zip(arms["weak"], arms["human"], strict=True) if w is not None and h is not None]
    t = tost_paired(diffs, st.tost_margin, st.alpha)
    out["tost"] = {"margin": st.tost_margin, "p": r(t["p"]), "lo90": r(t["lo"]), "hi90": r(t["hi"]),
                   "equivalent": bool(t["equivalent"])}
    out["equivalence"] = _equivalence(diffs, human_minus_random, st)
    for key, ceiling in (("pgr", "human"), ("pgr_gold", "gold")):
        if ceiling in arms:
            out[key] = _pgr_entry(pgr(arms["weak"], base, arms[ceiling]))
    if "random" in arms:
        out["pgr_random"] = _pgr_entry(pgr(arms["weak"], arms["random"], arms["human"]))
    return family


def dose_response_slopes(arms: dict[str, list], accuracy: dict[str, list]) -> list[float | None]:
    """Per seed, the least-squares slope of gold reward on label accuracy over the calibration sources (gold,
    random, flipped, noisy_gold_NN: accuracies set by construction, from 0 to 1); None for a seed without a line.
    Positive over seeds is what "the instrument responds to label quality" means."""
    cal = [n for n in arms if is_calibration(n)]
    n_seeds = len(next(iter(arms.values()), []))
    lines = [fit_line(seed_points(arms, accuracy, cal, i)) for i in range(n_seeds)]
    return [None if line is None else line[1] for line in lines]


def gold_per_nat(golds: list, base: list, kls: list) -> float | None:
    """Gold reward gained over the base per nat of KL to the start: the mean gain over the mean KL, over the seeds
    that have both. A ratio of means (as PGR), not a mean of per-seed ratios, which a seed whose KL is near 0
    blows up. None where no seed has both or the mean KL is not above 0."""
    seeds = [(g - b, k) for g, b, k in zip(golds, base, kls, strict=True) if None not in (g, b, k)]
    if not seeds:
        return None
    kl = sum(k for _, k in seeds) / len(seeds)
    return r(sum(g for g, _ in seeds) / len(seeds) / kl) if kl > 0 else None


def _dose_response(sources: dict, arms: list[str]) -> dict:
    """Does a source's label accuracy predict its target's gold reward? Spearman over every arm, and over the
    calibration sources alone (whose accuracies are set by construction)."""
    out = {}
    calibration = [n for n in arms if is_calibration(n)]
    for key, names in (("dose_response_spearman", arms), ("calibration_spearman", calibration)):
        points = [(sources[n]["label_accuracy"], sources[n]["gold_reward"]["mean"]) for n in names]
        points = [(a, g) for a, g in points if a is not None and g is not None]
        rho = spearman([a for a, _ in points], [g for _, g in points])
        out[key] = r(rho[0]) if rho else None
    return out


def other_draw(main: dict, run: dict | None) -> str | None:
    """Why `run` (a teacher run) did not draw its seed's data as `main` did, or None where it did or did not run.
    The base's gold reward is the base sampled on the same prompts with the same seed: equal only where the machine
    computes alike; the pairs' and D_u's hashes, where both summaries have them, must agree too."""
    if run is None:
        return None
    if run["base"]["gold_reward"] != main["base"]["gold_reward"]:
        return f"base gold reward {run['base']['gold_reward']} against {main['base']['gold_reward']} in {main['run']}"
    for out in DRAW_OUTS:
        a, b = (x.get("data", {}).get(out) for x in (main, run))
        if a and b and a != b:
            return f"{out} md5 {b[:8]} against {a[:8]} in {main['run']}"
    return None


def machines(summaries: dict[str, dict]) -> list[dict]:
    """Each machine the runs ran on, with its runs; runs whose summary predates the record under `machine: null`."""
    groups: dict[str, dict] = {}
    for run, s in sorted(summaries.items()):
        m = s.get("machine")
        key = json.dumps(m, sort_keys=True)
        groups.setdefault(key, {"machine": m, "runs": []})["runs"].append(run)
    return list(groups.values())


def analyse(params: Params, summaries: dict[str, dict]) -> dict:
    """metrics/study.json from the current run summaries (see the module docstring for what is computed)."""
    st = params.study
    seeds = [s for s in st.seeds if f"s{s}" in summaries]
    main = [summaries[f"s{s}"] for s in seeds]
    base = [m["base"]["gold_reward"] for m in main]

    # A teacher run is compared with its seed's main run (its human target, its base, its calibration line), so it
    # counts only where it drew the same data: on another machine the same seed samples other pairs.
    unpaired = {}
    for name in st.teachers:
        for s, m in zip(seeds, main, strict=True):
            why = other_draw(m, summaries.get(f"s{s}-{name}"))
            if why:
                unpaired[f"s{s}-{name}"] = why

    def per_seed(source: str, field: str = "gold_reward", teacher: str | None = None) -> list[float | None]:
        if teacher is None:
            return [m["sources"].get(source, {}).get(field) for m in main]
        return [None if f"s{s}-{teacher}" in unpaired else
                summaries.get(f"s{s}-{teacher}", {}).get("sources", {}).get("weak", {}).get(field) for s in seeds]

    arms = {s: per_seed(s) for s in st.sources}  # gold reward per seed, aligned with `seeds`
    accuracy = {s: per_seed(s, "label_accuracy") for s in st.sources}
    kl = {s: per_seed(s, "kl_estimate") for s in st.sources}
    heldout = {s: per_seed(s, "heldout_accuracy") for s in st.sources}
    for name in st.teachers:
        arms[f"weak@{name}"] = per_seed("weak", teacher=name)
        accuracy[f"weak@{name}"] = per_seed("weak", "label_accuracy", teacher=name)
        kl[f"weak@{name}"] = per_seed("weak", "kl_estimate", teacher=name)
        heldout[f"weak@{name}"] = per_seed("weak", "heldout_accuracy", teacher=name)

    out: dict[str, Any] = {"n_seeds": len(seeds), "seeds": seeds, "model": params.base.model,
                           "judge": params.judge.name, "machines": machines(summaries), "unpaired_runs": unpaired,
                           "base": {"gold_reward": _interval(base)}, "sources": {}}
    family: list[tuple[tuple, float | None]] = []  # (where in `out`, p): the contrasts Holm adjusts over
    for name, golds in arms.items():
        gain = paired_contrast(golds, base)
        out["sources"][name] = {
            "label_accuracy": _mean(accuracy[name]),
            "label_accuracy_interval": _interval([a for a in accuracy[name] if a is not None]),
            "gold_reward": _interval([g for g in golds if g is not None]),
            "gain_vs_base": _entry(gain),
            "kl_estimate": _mean(kl[name]),
            "gold_per_nat": gold_per_nat(golds, base, kl[name]),
            "heldout_accuracy": _mean(heldout[name]),
        }
        family.append((("sources", name, "gain_vs_base"), gain["p"]))
    versus_random: dict[str, dict] = {}
    if "random" in arms:
        floor_family, versus_random = _versus_random(out, arms)
        family += floor_family
    if "weak" in arms and "human" in arms:
        family += _weak_vs_human(out, arms, base, st, versus_random.get("human"))
    for name, eff in effective_accuracies(arms, accuracy).items():
        xs = [x for x in eff if x is not None]
        out["sources"][name]["effective_accuracy"] = _interval(xs) | {"n": len(xs)}
    if "human" in out["sources"] and "effective_accuracy" in out["sources"]["human"]:
        out["accuracy_to_match_human"] = out["sources"]["human"]["effective_accuracy"]
    for (path, p), adj in zip(family, holm([p for _, p in family]), strict=True):
        node = out
        for k in path:
            node = node[k]
        node["p_holm"] = r(adj)
    out |= _dose_response(out["sources"], list(arms))
    slopes = [x for x in dose_response_slopes(arms, accuracy) if x is not None]
    out["dose_response_slope"] = _interval(slopes) | {"n": len(slopes)}
    out["checks"] = calibration_checks(out)
    teacher_size = {}
    for name, overrides in st.teachers.items():
        m = re.search(r"@layers=(\d+)$", str(overrides.get("train_weak.model", "")))
        if m:
            s = out["sources"][f"weak@{name}"]
            teacher_size[m.group(1)] = {"label_accuracy": s["label_accuracy"], "gold_reward": s["gold_reward"]}
    if teacher_size:
        out["teacher_size"] = teacher_size
    return out


def calibration_checks(out: dict) -> dict[str, bool | None]:
    """The sandbox is an instrument only if these hold (None: the arm did not run or has no interval yet). Every
    contrast is against the `random` arm of the same seed, not the base: DPO on coin flips moves the policy too
    and costs gold reward through drift, so "above the base" would credit labels with what drift takes away."""
    s = out["sources"]

    def vs_random(name: str) -> dict | None:
        c = s.get(name, {}).get("minus_random")
        return c if c and c.get("lo") is not None else None

    flp, gold, human = vs_random("flipped"), vs_random("gold"), vs_random("human")
    # The default weak teacher must label D_u clearly better than a coin, and the teachers of the curve must differ
    # in accuracy, or "how accurate must weak labels be" has no range to be read on.
    weak = s.get("weak", {}).get("label_accuracy_interval") or {}
    teachers = [v["label_accuracy"] for n, v in s.items()
                if (n == "weak" or n.startswith("weak@")) and v.get("label_accuracy") is not None]
    slope, rho, eq = out.get("dose_response_slope") or {}, out.get("calibration_spearman"), out.get("equivalence")
    # t >= 4 (two-sided p about 0.016 on 4 df): human labels must stand clearly above coin flips before their gap
    # can scale an equivalence margin. An interval (n >= 2) without a t means no spread, so t is infinite.
    human_t4 = None if human is None else human["lo"] > 0 and (human["t"] is None or human["t"] >= 4)
    return {"at_least_5_seeds": out["n_seeds"] >= 5,  # the bar; fewer seeds give intervals too wide to calibrate
            "flipped_below_random": None if flp is None else flp["hi"] < 0,
            "gold_above_random": None if gold is None else gold["lo"] > 0,
            "human_above_random_t4": human_t4,
            "dose_response_slope_positive": None if slope.get("lo") is None else slope["lo"] > 0,
            "calibration_spearman_at_least_0_9": None if rho is None else rho >= 0.9,
            # margin = fraction x gap, so margin <= half the gap is fraction <= 0.5; compared as the fraction, since
            # the rounded margin and gap could differ in the last digit.
            "equivalence_margin_at_most_half_gap": None if not eq or eq["margin"] is None
            else eq["margin_fraction"] <= 0.5,
            "weak_teacher_at_least_0_60": None if weak.get("lo") is None
            else weak["mean"] >= 0.60 and weak["lo"] > 0.55,
            "teachers_span_0_10": None if len(teachers) < 2 else max(teachers) - min(teachers) >= 0.10}


CHECK_LABELS = {"at_least_5_seeds": "at least 5 seeds", "flipped_below_random": "flipped below random",
                "gold_above_random": "gold above random", "human_above_random_t4": "human above random with t ≥ 4",
                "dose_response_slope_positive": "dose-response slope above 0",
                "calibration_spearman_at_least_0_9": "calibration Spearman ≥ 0.9",
                "equivalence_margin_at_most_half_gap": "equivalence margin ≤ half the human − random gap",
                "weak_teacher_at_least_0_60": "weak teacher's label accuracy ≥ 0.60 (95% interval above 0.55)",
                "teachers_span_0_10": "the teachers' label accuracies span ≥ 0.10"}


def check_label(name: str) -> str:
    return CHECK_LABELS.get(name, name.replace("_", " "))


def check_verdict(ok: bool | None) -> str:
    """One check's outcome, the same words in the README's headline and in the report."""
    return "not measurable yet" if ok is None else "yes" if ok else "NO"


# --- the report ---------------------------------------------------------------------------------------------------

def _cell(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "–"
    if d.get("lo") is None:
        return f"{d['mean']:+.3f} (no interval)"
    return f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def box_gap(box, point) -> float:
    """Pixels from a point to a text box (0 inside it)."""
    return math.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))


def _label_points(ax, points: list[tuple[str, float, float]]) -> None:
    """Name each point at the first of a few offsets whose text box covers no other label or marker; a label
    set further out gets a thin leader line (arms of close accuracy, the weak teachers at about 0.53, crowd)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    ax.figure.canvas.draw()  # final limits and layout, so the window extents below are the saved ones
    renderer = ax.figure.canvas.get_renderer()
    pixels = {name: ax.transData.transform((x, y)) for name, x, y in points}
    markers = {name: Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for name, (px, py) in pixels.items()}
    placed = []

    near = [(5, 5), (5, -11), (-5, 5), (-5, -11)]
    far = [(d * sx, dy) for d in (25, 45) for dy in (22, -26, 0, 40, -44) for sx in (1, -1)]
    for name, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
        obstacles = placed + [m for other, m in markers.items() if other != name]
        for dx, dy in near + far:
            arrow = {"arrowstyle": "-", "color": "#999999", "lw": 0.5} if (dx, dy) in far else None
            a = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                            ha="left" if dx > 0 else "right", va="center", arrowprops=arrow)
            a.update_positions(renderer)
            box = Text.get_window_extent(a, renderer)  # the text alone: a leader line ends on its own point
            # A label without a leader line must be nearer its own point than any other.
            clear = arrow is not None or all(box_gap(box, pixels[name]) + 3 < box_gap(box, q)
                                             for other, q in pixels.items() if other != name)
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1 and ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
            if clear and inside and not any(box.overlaps(b) for b in obstacles):
                break
            a.remove()
        else:  # nowhere free: the first place, overlapping
            a = ax.annotate(name, (x, y), textcoords="offset points", xytext=near[0], fontsize=7, va="center")
            a.update_positions(renderer)
            box = Text.get_window_extent(a, renderer)
        placed.append(box)


def figure(out: dict, path: Path) -> None:
    """Gold reward against label accuracy, one point per arm with its 95% interval over seeds, the base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    names = [n for n in table_order(list(out["sources"])) if out["sources"][n]["label_accuracy"] is not None]
    colours = {"calibration": "#7f7f7f", "human": "#1f77b4", "weak": "#d62728", "teacher": "#ff7f0e"}
    for n in names:
        s = out["sources"][n]
        g = s["gold_reward"]
        err = None if g["lo"] is None else [[g["mean"] - g["lo"]], [g["hi"] - g["mean"]]]
        k = kind(n)
        ax.errorbar([s["label_accuracy"]], [g["mean"]], yerr=err, fmt="o", capsize=3, color=colours[k], label=k)
    # The line the effective accuracy reads off (effective_accuracies does it per seed; this is its fit through
    # the means): where an arm sits against it says what accuracy of randomly flipped gold labels it is worth.
    cal = [(out["sources"][n]["label_accuracy"], out["sources"][n]["gold_reward"]["mean"]) for n in names
           if on_line(n) and out["sources"][n]["gold_reward"]["mean"] is not None]
    line = noise_line(cal)
    if line is not None:
        ax.plot([0.5, 1.0], [line[0] + line[1] * 0.5, line[0] + line[1]], color="#7f7f7f", lw=0.8, ls="-.",
                label="gold labels with random flips (fit)")
    b = out["base"]["gold_reward"]
    if b["mean"] is not None:
        ax.axhline(b["mean"], color="black", lw=0.8, ls="--", label="base (before DPO)")
    ax.axvline(0.5, color="#bbbbbb", lw=0.8, ls=":", label="chance")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="best")
    ax.set_xlabel("label accuracy against the gold judge (D_u)")
    ax.set_ylabel("target's gold reward on the test prompts")
    ax.set_title(f"Dose-response over {out['n_seeds']} seeds (mean, 95% t-interval)", fontsize=10)
    fig.tight_layout()
    _label_points(ax, [(n, out["sources"][n]["label_accuracy"], out["sources"][n]["gold_reward"]["mean"])
                       for n in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def plot_rows(out: dict) -> list[dict]:
    """plots/study.json, in the table's order: one row per arm, each with the base's gold reward (the horizontal line
    of `.dvc/plots/dose_response.json`), since a DVC plot reads one file of rows."""
    rows = []
    for n in table_order(list(out["sources"])):
        s = out["sources"][n]
        if s["label_accuracy"] is None:
            continue
        rows.append({"source": n, "kind": kind(n), "label_accuracy": s["label_accuracy"],
                     "gold_reward": s["gold_reward"]["mean"], "lo": s["gold_reward"]["lo"],
                     "hi": s["gold_reward"]["hi"], "base": out["base"]["gold_reward"]["mean"],
                     "minus_random": (s.get("minus_random") or {}).get("mean")})
    return rows


def _with_t(c: dict | None) -> str:
    return _cell(c) + (f" (t = {c['t']:.1f})" if c and c.get("t") is not None else "")


def _ratio(g: dict) -> str:
    """A PGR entry in words: its mean and Fieller interval, or why there is none."""
    if g["mean"] is None:
        return f"undefined ({g['note']})"
    if g["lo"] is None:
        return f"{g['mean']:.2f}, no bounded interval ({g['note']})"
    return f"{g['mean']:.2f} [{g['lo']:.2f}, {g['hi']:.2f}]"


def _floor_sentence(out: dict, made: str) -> str:
    s, n = out["sources"], out["n_seeds"]
    arms = ", ".join(f"`{name}` {_with_t(s[name]['minus_random'])}" for name in table_order(list(s))
                     if (s[name].get("minus_random") or {}).get("mean") is not None)  # an arm that ran
    return (f"Over {n} seed{'s' * (n != 1)} (each a whole pipeline run{made}; 95% t-intervals over seeds), each "
            "target against the one aligned on coin flips (`random`: the same seed, D_u and test prompts), in gold "
            f"reward, paired by seed: {arms}. The coin-flip target's own gain over the base is "
            f"{_cell(s['random']['gain_vs_base'])}: DPO on labels that carry nothing still moves the policy (drift), "
            "so the floor is that target, not the base.")


def _equivalence_sentence(out: dict) -> str:
    e, gap = out["equivalence"], out["sources"].get("human", {}).get("minus_random")
    if e["margin"] is None:
        return f"No equivalence of weak and human can be tested: {e['note']}."
    tost = f"TOST p = {e['p']}" if e["p"] is not None else "TOST needs 2 seeds"
    if e["note"]:  # the verdict must never let coin-flip-like labels pass as "equivalent to human"
        t = "" if gap.get("t") is None else f", t = {gap['t']:.1f}"
        return (f"Weak is not declared equivalent to human: {e['note']} (human − random: {_cell(gap)}{t}; "
                f"{tost} within ±{e['margin']}, {e['margin_fraction']} of that gap).")
    return (f"Equivalence within ±{e['margin']} ({e['margin_fraction']} of the human − random gap) is "
            f"{'shown' if e['equivalent'] else 'not shown'} ({tost}).")


def checks_verdict(checks: dict[str, bool | None]) -> str:
    """What the checks allow, naming every check that fails or cannot be measured (README headline and report)."""
    failed = [check_label(k) for k, v in checks.items() if v is False]
    unknown = [check_label(k) for k, v in checks.items() if v is None]
    if not failed and not unknown:
        return "Every check holds, so the weak-vs-human contrast can be read."
    parts = ([f"fails {len(failed)} of its {len(checks)} checks ({', '.join(failed)})"] if failed else []) + \
        ([f"cannot measure {len(unknown)} yet ({', '.join(unknown)})"] if unknown else [])
    return (f"This study {' and '.join(parts)}: until every check holds, no weak-vs-human claim should be read from "
            "these numbers.")


def answer(out: dict) -> str:
    """The study's answer in a few sentences, every number from `out` (the report; the README has its short form)."""
    s = out["sources"]
    if not out["n_seeds"]:
        return "The study has no finished seed yet: `make study` runs it (docs/STUDY.md)."
    made = (f" of commit{'s' * (len(out['commits']) > 1)} {', '.join(out['commits'])}" if out.get("commits") else "")
    lines = [_floor_sentence(out, made) if "random" in s else
             f"{out['n_seeds']} seeds finished; the study has no `random` arm, so no contrast against the floor."]
    if "weak_minus_human" in out:
        w = out["weak_minus_human"]
        holm_p = "" if w.get("p_holm") is None else f" (Holm-adjusted p = {w['p_holm']})"
        pgr_floor = (f"; the performance gap recovered against the floor, (weak − random) / (human − random): "
                     f"{_ratio(out['pgr_random'])}" if "pgr_random" in out else "")
        lines.append(f"Weak minus human, paired by seed: {_cell(w)}{holm_p}{pgr_floor}. {_equivalence_sentence(out)}")
    else:
        lines.append("The study's sources lack `weak` or `human`, so there is no weak-vs-human contrast.")
    if (out.get("accuracy_to_match_human") or {}).get("mean") is not None:
        lines.append(f"To do as well as the human labels, gold labels with random errors would need an accuracy of "
                     f"{_cell(out['accuracy_to_match_human']).replace('+', '')} (the human labels' own: "
                     f"{s['human']['label_accuracy']}; the weak labels': {s['weak']['label_accuracy']})"
                     + ("; an interval reaching past 1.0, the most accurate labels can be, means the seeds do not "
                        "bound it yet." if (out["accuracy_to_match_human"].get("hi") or 0) > 1 else "."))
    c = out["checks"]
    lines += ["Calibration: " + "; ".join(f"{check_label(k)}: {check_verdict(v)}" for k, v in c.items()) + ". "
              + checks_verdict(c),
              f"What it does not show: this is one target model ({out.get('model')}) on one task (gold judge "
              f"{out.get('judge')}); a seed redraws data and training but not the model or the task, so "
              "nothing here transfers to other models, judges or data without running the study there. "
              + machine_sentence(out)]
    return "\n\n".join(lines)


def metrics_split(out: dict) -> tuple[dict, dict]:
    """The analysis as DVC metrics: numbers and nulls to metrics/study.json (what `dvc metrics show/diff` compares;
    a check is 1 where it holds, 0 where it fails, null where it cannot be measured yet), everything else (model
    and judge names, seeds, machines, commits, verdict flags) to its .info.json beside it."""
    results, info = {}, {}
    for key, value in out.items():
        if key == "checks":
            results[key] = {k: None if v is None else int(v) for k, v in value.items()}
        elif isinstance(value, dict):
            r, i = metrics_split(value)
            if r or not i:
                results[key] = r
            if i:
                info[key] = i
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            results[key] = value
        else:
            info[key] = value
    return results, info


def readme_block(out: dict, report: str) -> str:
    """The README's short form of the answer: each arm against the floor in one table, weak minus human with its
    recovered fraction, and the checks' tally. The sentences that explain them live in the report (`answer`),
    linked here rather than copied, so the README's first screen stays short."""
    s, n = out["sources"], out["n_seeds"]
    if not n or "random" not in s:
        return answer(out)
    arms = [name for name in table_order(list(s)) if (s[name].get("minus_random") or {}).get("mean") is not None]
    made = (f" of commit{'s' * (len(out['commits']) > 1)} {', '.join(out['commits'])}" if out.get("commits") else "")
    lines = [f"Over {n} seed{'s' * (n != 1)}{made}: gold reward of each target minus the target aligned on coin "
             "flips (`random`, same seed, D_u and test prompts), mean [95% t-interval over seeds]:", "",
             "| " + " | ".join(f"`{a}`" for a in arms) + " |", "|" + "---|" * len(arms),
             "| " + " | ".join(_cell(s[a]["minus_random"]).replace(" (no interval)", "") for a in arms) + " |", ""]
    if "weak_minus_human" in out:
        pgr = f"; recovered fraction (weak − random) / (human − random): {_ratio(out['pgr_random'])}" \
            if "pgr_random" in out else ""
        lines += [f"Weak minus human: {_cell(out['weak_minus_human'])}{pgr}.", ""]
    c = out["checks"]
    held, failed = sum(v is True for v in c.values()), sum(v is False for v in c.values())
    unknown = len(c) - held - failed
    verdict = ("every check holds" if held == len(c) else
               "no weak-vs-human claim should be read until every check holds")
    lines.append(f"Calibration checks: {held} of {len(c)} hold, {failed} fail, {unknown} cannot be measured yet: "
                 f"{verdict}. Which, why, and what the study does not show (one model, one task, one machine): "
                 f"[{report}]({report}).")
    return "\n".join(lines)


def machine_sentence(out: dict) -> str:
    """Which machines the runs ran on, from the summaries' record, and what that does to the pairing."""
    groups = out.get("machines") or []

    def name(m: dict | None) -> str:
        if m is None:
            return "a machine the summary does not record (it predates the record)"
        bf16 = {True: "native bf16", False: "no native bf16, so fp32", None: "bf16 unknown"}[m.get("native_bf16")]
        return f"{m.get('gpu') or m.get('cpu')} ({bf16}, torch {m.get('torch')})"

    if not groups or (len(groups) == 1 and groups[0]["machine"] is None):
        text = ("The run summaries do not record their machine (they predate the record); another machine "
                "computes other numbers from the same seeds.")
    elif len(groups) == 1:
        text = (f"All runs ran on {name(groups[0]['machine'])}; another machine computes other numbers from the "
                "same seeds.")
    else:
        text = ("The runs ran on " + "; ".join(f"{name(g['machine'])}: {', '.join(g['runs'])}" for g in groups)
                + ". Machines differ in their arithmetic, so a seed on one is another draw than on the other; the "
                  "intervals over seeds include that spread.")
    unpaired = out.get("unpaired_runs") or {}
    if unpaired:
        text += (f" {len(unpaired)} teacher run{'s' * (len(unpaired) != 1)} drew other data than its seed's main run "
                 f"and is left out of every paired figure ({'; '.join(f'{k}: {v}' for k, v in unpaired.items())}).")
    return text


README_BEGIN, README_END = "<!-- study:begin (written by `make study-report`) -->", "<!-- study:end -->"


def update_readme(readme: Path, text: str) -> bool:
    """Replace the README's study block (between the markers) with `text`; False where there are no markers."""
    if not readme.is_file():
        return False
    doc = readme.read_text()
    if README_BEGIN not in doc or README_END not in doc:
        return False
    head, rest = doc.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    with atomic_file(readme) as f:
        f.write(f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")
    return True


def seed_table(summaries: dict[str, dict], out: dict) -> list[str]:
    """The runs themselves: each seed's base and every arm's gain over it, a row per seed (the unit of analysis;
    the intervals above are over these rows). An unpaired teacher run shows as `n/p`."""
    names = table_order(list(out["sources"]))
    rows = ["| seed | machine | base | " + " | ".join(md(n) for n in names) + " |",
            "|---" * (len(names) + 3) + "|"]
    for seed in out["seeds"]:
        main = summaries[f"s{seed}"]
        base = main["base"]["gold_reward"]
        cells = []
        for n in names:
            run = f"s{seed}-{n.removeprefix('weak@')}" if n.startswith("weak@") else f"s{seed}"
            src = "weak" if n.startswith("weak@") else n
            g = summaries.get(run, {}).get("sources", {}).get(src, {}).get("gold_reward")
            cells.append("n/p" if run in out.get("unpaired_runs", {}) else "–" if g is None else f"{g - base:+.3f}")
        m = main.get("machine") or {}
        where = re.sub(r"\((R|TM)\)", "", str(m.get("gpu") or m.get("cpu") or "not recorded"))
        rows.append(f"| {seed} | {md(where)} | {base:.4f} | " + " | ".join(cells) + " |")
    return rows


def markdown(out: dict, missing: list[str], stale: list[str], figure_name: str | None,
             seed_rows: list[str] = ()) -> str:
    s = out["sources"]
    lines = ["# The study: feedback sources over seeds", "",
             f"{out['n_seeds']} seeds ({', '.join(map(str, out['seeds'])) or 'none'}); each seed is one run of the "
             "whole pipeline (holdout, sampled pairs, D_l/D_u, annotators, training). Intervals are 95% "
             "t-intervals over seeds; contrasts are paired within a seed (same test prompts); p-values are "
             "two-sided, Holm-adjusted over every contrast in this report (`p_holm`).", ""]
    lines += [answer(out), ""]
    if missing or stale:
        lines += [f"**Incomplete**: {len(missing)} planned runs missing ({', '.join(missing) or 'none'}), "
                  f"{len(stale)} stale (made with other params, or by code whose results differ or have no fingerprint "
                  f"here: {', '.join(stale) or 'none'}). `make study` measures the fingerprints and runs what "
                  "changed.", ""]
    if figure_name:
        lines += [f"![gold reward against label accuracy]({figure_name})", ""]
    lines += ["| source | label accuracy | gold reward | gain vs base | p (Holm) | minus random [95%] | t; p (Holm) | "
              "held-out pref. accuracy | KL to start (nats) | gold per nat |",
              "|---" * 10 + "|",
              f"| base | – | {_cell(out['base']['gold_reward'])} |" + " – |" * 7]

    def num(x: float | None, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    for n in table_order(list(s)):
        x = s[n]
        floor = x.get("minus_random")
        test = "–" if floor is None else f"{num(floor.get('t'), '.2f')}; {num(floor.get('p_holm'), '.3g')}"
        lines.append(f"| {md(n)} | {num(x['label_accuracy'], '.3f')} | {_cell(x['gold_reward'])} | "
                     f"{_cell(x['gain_vs_base'])} | {num(x['gain_vs_base'].get('p_holm'), '.3g')} | {_cell(floor)} | "
                     f"{test} | {num(x.get('heldout_accuracy'), '.3f')} | {num(x['kl_estimate'], '.2f')} | "
                     f"{num(x.get('gold_per_nat'), '+.3f')} |")
    lines += ["", "Minus random: the target against the one aligned on coin flips in the same seed (the floor). Gold "
              "per nat: the mean gain over the base divided by the mean KL to the start, over seeds.", ""]
    if seed_rows:
        lines += ["## Per seed: gain over the base in gold reward", "", *seed_rows, ""]
    if "weak_minus_human" in out:
        w, t, e = out["weak_minus_human"], out["tost"], out["equivalence"]
        lines += ["## Weak against human", "",
                  f"- weak − human, paired by seed: {_cell(w)}, p (Holm) = {w.get('p_holm')}",
                  f"- equivalence (TOST, margin ±{e['margin']} = {e['margin_fraction']} × |human − random|): 90% "
                  f"interval [{e['lo90']}, {e['hi90']}], p = {e['p']}: "
                  f"{'equivalent' if e['equivalent'] else 'not shown equivalent'}"
                  + (f" ({e['note']})" if e.get("note") else ""),
                  f"- for comparison, TOST within the fixed margin ±{t['margin']} (`study.tost_margin`): 90% interval "
                  f"[{t['lo90']}, {t['hi90']}], p = {t['p']}"]
        for key, what in (("pgr_random", "human over the random floor"), ("pgr", "human over the base"),
                          ("pgr_gold", "gold over the base")):
            if key in out:
                lines.append(f"- performance gap recovered against {what}: {_ratio(out[key])}")
        for n in table_order(list(s)):
            e = s[n].get("effective_accuracy")
            if e and e.get("mean") is not None:
                lines.append(f"- {md(n)}: labels {s[n]['label_accuracy']} accurate against gold, worth gold labels "
                             f"of accuracy {_cell(e).replace('+', '')} (effective accuracy: where its gold reward "
                             f"meets the seed's line through random, noisy_gold_NN and gold; {e['n']} seeds)")
        for n in table_order(list(s)):
            if "minus_human" in s[n]:
                lines.append(f"- {md(n)} − human: {_cell(s[n]['minus_human'])}, p (Holm) = "
                             f"{s[n]['minus_human'].get('p_holm')}")
        lines.append("")
    lines += ["## Is the instrument calibrated?", "",
              f"Spearman(label accuracy, gold reward): {out['dose_response_spearman']} over every arm, "
              f"{out['calibration_spearman']} over the calibration sources. Least-squares slope of gold reward on "
              f"label accuracy over the calibration sources, per seed: {_cell(out['dose_response_slope'])} "
              f"({out['dose_response_slope']['n']} seeds).", ""]
    for check, ok in out["checks"].items():
        lines.append(f"- {check_label(check)}: {check_verdict(ok)}")
    lines += ["", checks_verdict(out["checks"]), ""]
    lines += ["What this does not show: seeds here redraw the data and training of one small model on one "
              "sandbox task with a lexicon judge; an interval over few seeds is wide, a non-significant contrast is "
              "not evidence of no difference (only the TOST line can support \"matches\"), and nothing here "
              "transfers to other models, judges or data without running the study there.", ""]
    return "\n".join(lines)


def report(params: Params, params_file: Path, metrics: Path | None = None, md_out: Path | None = None,
           plot_out: Path | None = None) -> dict:
    """Write the study's metrics, report (+ figure) and plot rows; default names carry the params file's label
    (metrics/study.json for ./params.yaml, metrics/study_tone.json for presets/tone.yaml)."""
    label = runs_dir(params_file).name
    suffix = "" if label == "default" else f"_{label}"
    # The README's block quotes the committed report: a report written elsewhere (--out) leaves it alone.
    readme = label == "default" and md_out is None
    metrics = metrics or Path(f"metrics/study{suffix}.json")
    md_out = md_out or Path(f"reports/study{suffix}.md")
    plot_out = plot_out or Path(f"plots/study{suffix}.json")
    code, records = code_digest(), fingerprint.load()
    summaries, missing, stale = {}, [], []
    for run, overrides in plan(params, file_overrides(params_file)).items():
        path = runs_dir(params_file) / f"{run}.json"
        if not path.is_file():
            missing.append(run)
            continue
        summary = _current(runs_dir(params_file), run, run_digest(params_file, overrides, code), overrides, code,
                           records)
        if summary is None:
            stale.append(run)
            continue
        summaries[run] = summary
    out = analyse(params, summaries)
    # Which code made the results: summaries written before the commit was recorded carry the experiment's name,
    # whose ref still says it (while the experiment is kept).
    out["commits"] = sorted({c[:7] for c in map(_commit_of, summaries.values()) if c})
    out["n_runs_missing"], out["n_runs_stale"] = len(missing), len(stale)
    fig = md_out.with_suffix(".png")
    if plot_rows(out):
        figure(out, fig)
    results, info = metrics_split(out)
    write_json(metrics, results)
    write_json(info_path(metrics), info)
    write_json(plot_out, plot_rows(out))
    with atomic_file(md_out) as f:
        f.write(markdown(out, missing, stale, fig.name if plot_rows(out) else None,
                         seed_table(summaries, out) if out["n_seeds"] else []))
    figure_link = f"\n\n![gold reward against label accuracy, over seeds]({fig.as_posix()})" if plot_rows(out) else ""
    if readme and update_readme(Path("README.md"), readme_block(out, md_out.as_posix()) + figure_link):
        log.info("study: README.md's study block updated")
    log.info("study: %d seeds, %d missing, %d stale runs -> %s, %s", out["n_seeds"], len(missing), len(stale),
             metrics, md_out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weakalign.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", help="print the runs and the params each sets")
    r_ = sub.add_parser("run", help="run every missing or stale run, one at a time")
    r_.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (names from `plan`)")
    r_.add_argument("--commit", action="store_true", help="git-commit each run's summary as it lands")
    r_.add_argument("--dvc", default="dvc", help="the dvc executable (default: dvc on PATH)")
    r_.add_argument("-j", "--jobs", type=int, default=1, help="runs at a time (default 1: one per 2-core machine)")
    r_.add_argument("--no-fingerprint", action="store_true", help="do not measure result fingerprints (then a "
                    "run stays current only while the code is the same)")
    rep = sub.add_parser("report", help="metrics/study.json, reports/study.md and its figure, plots/study.json")
    rep.add_argument("--metrics", type=Path, help="default metrics/study.json (study_<preset>.json for a preset)")
    rep.add_argument("--out", type=Path, help="default reports/study.md; its figure goes beside it as .png")
    rep.add_argument("--plot", type=Path, help="default plots/study.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("WEAKALIGN_LOG", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        params = load_params(args.params)
        if args.command == "plan":
            for run, overrides in plan(params, file_overrides(Path(args.params))).items():
                print(run, " ".join(f"-S {k}={_flow(v)}" for k, v in overrides.items()))
            return 0
        if args.command == "run":
            return 1 if run_all(params, Path(args.params), args.only, args.commit, args.dvc, args.jobs,
                                 not args.no_fingerprint) else 0
        report(params, Path(args.params), args.metrics, args.out, args.plot)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
