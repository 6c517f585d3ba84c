"""Running the study: each planned run as a queued `dvc exp run`, DVC's queue driven and watched (a dead worker
is restarted), each finished run summarised into study/runs/<label>/<run>.json and, with --commit, committed."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from weakalign import fingerprint
from weakalign.config.params import Params
from weakalign.fingerprint import code_digest, machine
from weakalign.preset import exp_ref, flow
from weakalign.records.io import write_json
from weakalign.records.resume import is_pipeline
from weakalign.study.planning import (DRAW_OUTS, check_runs, current, file_overrides, input_file, params_digest, plan,
                                      ran_with, run_digest, runs_dir, shard)

log = logging.getLogger("weakalign.study")


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
            if is_pipeline(Path(line[3:]))]


def baseline(ref: str | None) -> str | None:
    """The commit an experiment ran on: DVC files it under refs/exps/<sha[:2]>/<sha[2:]>/<name>."""
    parts = (ref or "").split("/")
    return parts[2] + parts[3] if len(parts) == 5 and parts[:2] == ["refs", "exps"] else None


def commit_of(summary: dict) -> str | None:
    if summary.get("commit"):
        return summary["commit"]
    try:
        return baseline(exp_ref(summary["experiment"])) if summary.get("experiment") else None
    except (subprocess.CalledProcessError, OSError):  # not a git checkout, or git absent
        return None


def _queue_status() -> tuple[list[tuple[str, str]], bool]:
    """(name, status) of each task in DVC's experiment queue, in `dvc queue status` order (running, queued, failed,
    done; oldest first within each), and whether any queue worker is active: read through DVC's Python API, the
    calls `dvc queue status` itself makes, instead of parsing its table."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        queue = repo.experiments.celery_queue
        tasks = [(t["name"], t["status"]) for t in queue.status() if t.get("name")]
        return tasks, any(queue.worker_status().values())


def _queued(dvc: str, prefix: str = "study-") -> dict[str, str]:
    """Task name -> status (Queued, Running, Failed, Success) of the tasks in DVC's experiment queue (the study's:
    names starting with `prefix`)."""
    listed, active = _queue_status()
    tasks = {name: status for name, status in listed if name.startswith(prefix)}
    # A task still "Running" while no worker is active is a leftover of a killed study (the session, the machine
    # or the worker died mid-run): DVC never finishes it nor runs it again, so it is marked failed here and the
    # caller queues the run afresh; its finished stages come back from the run cache.
    dead = [n for n, status in tasks.items() if status == "Running"]
    if dead and not active:
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


def read_json(ref: str, path: str, repo: str | None = None) -> dict:
    """A JSON file of an experiment's commit, git-tracked (feedback.json) or a cached out of a stage (alignment.json:
    its dvc.lock names it, DVC's cache holds it), through DVC's API, which reads both."""
    import dvc.api

    return json.loads(dvc.api.read(path, repo=repo, rev=ref))


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
    alignment = read_json(ref, "metrics/alignment.json")
    feedback = read_json(ref, "metrics/feedback.json")
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
    tasks = _queued(dvc, prefix="")  # one reading of the queue for all three decisions below
    queued = {n: status for n, status in tasks.items() if n.startswith("study-")}
    # Finished in an earlier, interrupted study (only its summary is missing), or running: no new task.
    want = [n for n in pending if exp_ref(n) is None and queued.get(n) != "Running"]
    remove, add = queue_order(want, queued)
    if remove:  # failed in an interrupted study, or waiting out of plan order
        log.info("study: queueing %d runs again, in plan order (%s)", len(remove),
                 ", ".join(pending[n] for n in remove))
        subprocess.run([dvc, "queue", "remove", *remove], stdout=subprocess.DEVNULL)
    for name in add:
        guard()
        run = pending[name]
        sets = sum((["-S", f"{k}={flow(v)}"] for k, v in todo[run].items()), [])
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


def _run_queue(dvc: str, jobs: int, collect, done=lambda: False) -> bool:
    """`dvc exp run --run-all`, calling `collect` every 10 s. Stop it once `done()` (every run has its summary: a
    queue worker can stay idle after the last task and keep `--run-all` waiting for ever, seen on 2026-12-06 with
    two workers after the file broker read a half-written message; its idle workers are stopped too), or when DVC's
    queue worker is gone for WORKER_GONE_CHECKS checks running; return whether the worker was gone."""
    t0 = time.perf_counter()
    worker = subprocess.Popen([dvc, "exp", "run", "--run-all", "-j", str(jobs)])
    gone = 0  # consecutive checks that found no live queue worker
    while worker.poll() is None and gone < WORKER_GONE_CHECKS:
        time.sleep(10)
        collect()
        if done():
            break
        gone = gone + 1 if _queue_worker_gone() else 0
    if worker.poll() is None:
        worker.terminate()
        worker.wait()
        if done():
            subprocess.run([dvc, "queue", "stop"], capture_output=True)
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
        if "params_digest" in summary and ran_with(summary) == params_digest(overrides) and \
                summary.get("code") not in (None, code):
            wanted.setdefault(summary["code"], summary.get("commit"))
    for c, rev in wanted.items():
        if rev and kind not in fingerprint.load().get(c, {}):
            log.info("study: measuring the result fingerprint of code %s (commit %s; tiny preset, ~6 min)", c, rev)
            fingerprint.ensure(rev, c, dvc, kind)
            measured.append(c)
    if measured and commit:
        _git_commit([str(fingerprint.RECORDS)], f"study: result fingerprints of code {', '.join(measured)}")


def _planned(params: Params, params_file: Path, only: list[str] | None,
             shard_spec: str | None = None) -> dict[str, dict[str, Any]]:
    """The plan's runs (of one shard, `--shard I/N`), or those of them named by --only (an unknown name is an
    error)."""
    runs = shard(plan(params, file_overrides(params_file)), shard_spec)
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise ValueError(f"--only: no run named {unknown[0]!r}; the plan has {', '.join(runs)}")
        runs = {k: v for k, v in runs.items() if k in only}
    return runs


def _check_committed(params_file: Path, input_paths: list[str], code: str) -> None:
    """A queued experiment copies the working tree as it is at that moment, uncommitted edits included, so the
    pipeline must be the committed code named `code` whenever a task is queued: at the start, and again before each
    task (the fingerprint takes minutes first, and a dead worker's runs are queued hours later)."""
    dirty = _uncommitted(params_file, input_paths)
    if dirty:
        raise ValueError(f"uncommitted changes to {', '.join(dirty[:3])}: a queued experiment copies the "
                         "working tree, so the study's record would not describe what ran; commit or stash, "
                         "then `study run` again (it keeps every finished run)")
    if code_digest() != code:
        raise ValueError(f"the pipeline's code changed from {code} to {code_digest()} since this study "
                         "started (a commit while it queued): `study run` again to queue runs under the new code")


def run_all(params: Params, params_file: Path, only: list[str] | None, commit: bool, dvc: str, jobs: int,
            fingerprints: bool = True, shard_spec: str | None = None) -> int:
    """Queue every planned run whose summary is missing or stale, run the queue `jobs` at a time, and write each
    run's summary as soon as its experiment exists; return how many runs did not finish."""
    runs, out_dir = _planned(params, params_file, only, shard_spec), runs_dir(params_file)
    inputs = {k: input_file(v) for k, v in runs.items()}  # now, like the digests below
    input_paths = sorted({i["path"] for i in inputs.values() if i})
    # Digests once, now: params.yaml or the code may be edited while the queue runs (hours); a run's summary must
    # name what it ran with, which is HEAD at queue time.
    code = code_digest()
    guard = functools.partial(_check_committed, params_file, input_paths, code)
    guard()
    digests = {k: run_digest(params_file, v, code) for k, v in runs.items()}
    pdigests = {k: params_digest(v) for k, v in runs.items()}
    if fingerprints:
        _fingerprints(out_dir, runs, code, dvc, commit)
    records = fingerprint.load()
    todo = {k: v for k, v in runs.items() if current(out_dir, k, digests[k], v, code, records) is None}
    log.info("study: %d of %d runs to do (%s)", len(todo), len(runs), ", ".join(todo) or "none")
    # Every run keeps the stage commands of params.yaml (no path is overridden), so DVC's run cache serves a run's
    # finished stages to any later run with the same inputs, a rerun after a kill and `dvc repro` in the workspace
    # (the seed-0 run computes the default's targets). A killed run loses only the stage it was in.
    check_runs(todo)
    pending = {f"study-{run}-{digests[run][:8]}": run for run in todo}  # experiment name -> run

    def collect() -> None:
        for name, run in list(pending.items()):
            ref = exp_ref(name)
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
        if not pending or not _run_queue(dvc, jobs, collect, lambda: not pending):
            break
        log.error("study: DVC's queue worker is gone while `dvc exp run --run-all` waits on (seen on 2026-12-02: "
                  "kombu's file broker read a half-written message); starting it again with %d runs to do",
                  len(pending))
    for name, run in pending.items():
        log.error("study: %s did not finish (experiment %s); `study run` queues it again", run, name)
    return len(pending)
