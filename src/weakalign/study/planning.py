"""The study's plan: which runs it has (a seed's main run, a teacher run per seed), the params each sets as
`dvc exp run -S` overrides, and whether a run's summary is current (its params, its code's result fingerprint,
its input file)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from weakalign import fingerprint
from weakalign.config.params import Params, compose, read_yaml
from weakalign.preset import changes


RUNS = Path("study/runs")


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


def shard(runs: dict[str, dict[str, Any]], spec: str | None) -> dict[str, dict[str, Any]]:
    """The runs of shard `spec` ("I/N": the I-th of N machines), or all of them for None. A shard takes whole seeds
    (the k-th seed of the plan goes to shard k mod N + 1): a teacher run is paired with its seed's main run only
    where both drew the same data, i.e. ran on the same kind of machine."""
    if spec is None:
        return runs
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard {spec!r}: expected I/N with 1 <= I <= N, e.g. 1/2")
    i, n = int(m.group(1)), int(m.group(2))
    seeds = list(dict.fromkeys(o["base.seed"] for o in runs.values()))
    mine = {seed for k, seed in enumerate(seeds) if k % n == i - 1}
    return {run: o for run, o in runs.items() if o["base.seed"] in mine}


def file_overrides(params_file: Path) -> dict[str, Any]:
    """Where a params file other than ./params.yaml (a preset) differs from it, as `-S` params: the experiments
    run on params.yaml, so a study of presets/tone.yaml sets its judge and prompts in every run."""
    default = Path("params.yaml")
    if params_file.resolve() == default.resolve():
        return {}
    mine, theirs = ({k: v for k, v in compose(f).items() if k != "study"} for f in (params_file, default))
    return dict(changes(Params, theirs, mine))


def runs_dir(params_file: Path) -> Path:
    """study/runs/default for ./params.yaml, study/runs/<stem> for another params file (presets/tone.yaml: tone)."""
    same = params_file.resolve() == Path("params.yaml").resolve()
    return RUNS / ("default" if same else params_file.stem)


def effective_params(overrides: dict[str, Any], raw: dict | None = None) -> dict:
    """./params.yaml (or `raw`, another version of it) without `study`, as one run of the study sees it: with the
    run's params set."""
    raw = read_yaml("params.yaml") if raw is None else copy.deepcopy(raw)
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


def params_digest(overrides: dict[str, Any], raw: dict | None = None) -> str:
    """The identity of one run's params: params.yaml (without `study`; `raw`: another version of it) with its
    overrides, but not `paths`: where the outputs are written changes no result (the input, `data.path`, is checked
    apart: _same_input). With the code's result fingerprint (weakalign.fingerprint) it decides whether a run's
    summary is current."""
    params = effective_params(overrides, raw)
    params.pop("paths", None)
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


@functools.cache
def _params_at(commit: str) -> dict | None:
    """params.yaml at `commit`; None where this clone lacks the commit."""
    done = subprocess.run(["git", "show", f"{commit}:params.yaml"], capture_output=True, text=True)
    return yaml.safe_load(done.stdout) if done.returncode == 0 else None


def _with_new_keys(old: dict, now: dict) -> dict:
    """`old` with every key it lacks taken from `now`, at any depth; its own values and keys kept."""
    out = dict(old)
    for key, value in now.items():
        if key not in out:
            out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _with_new_keys(out[key], value)
    return out


def ran_with(summary: dict) -> str | None:
    """The params digest of what a recorded run ran with: its commit's params.yaml with its params, digested as
    today (the digest it recorded is kept where the commit is not at hand): so a run recorded before `paths` left the
    digest stays current across a change of `paths` alone. A key added to params.yaml since is read at today's
    default: the code that added it is current only if its results are the study's (the fingerprint, measured
    with that default), so the default is the behaviour the run had before the key existed."""
    raw = _params_at(summary["commit"]) if summary.get("commit") and "params" in summary else None
    if raw is None:
        return summary.get("params_digest")
    return params_digest(summary["params"], _with_new_keys(raw, read_yaml("params.yaml")))


def check_runs(runs: dict[str, dict[str, Any]]) -> None:
    """Every planned run's params must validate before anything is queued (a typo in `study.set`, a teacher
    that sets n_labeled beside a labeled_fraction): one clear error instead of a failed experiment an hour in."""
    from weakalign.config.params import ParamsError, parse_params

    study = read_yaml("params.yaml").get("study")
    for run, overrides in runs.items():
        raw = effective_params(overrides)
        # a run's own params: no stage reads `study`, and its teachers are the plan
        raw["study"] = {**study, "teachers": {}} if isinstance(study, dict) else study
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


def current(runs: Path, run: str, digest: str, overrides: dict[str, Any] | None = None,
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
        if ran_with(summary) != params_digest(overrides) or \
                not fingerprint.same_results(summary.get("code"), code, records or {}):
            return None
    elif summary.get("digest") != digest:
        return None
    return summary if overrides is None or _same_input(summary, input_file(overrides)) else None


# The outs whose hashes say which data a run drew: its sampled pairs and its D_u (human labels included).
DRAW_OUTS = ("data/pairs.jsonl", "data/split/unlabeled.jsonl")
