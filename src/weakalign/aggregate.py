r"""Sweeps with error bars: mean ± 95% confidence interval of every metric, per configuration of a DVC sweep.

    python -m weakalign.aggregate --out-md reports/sweep.md --out-json plots/sweep.json
    dvc exp show --json -A > exps.json && python -m weakalign.aggregate --input exps.json \
        --out-md reports/sweep.md --out-json plots/sweep.json --metrics 'metrics/headline.json:gold_reward_*'
    dvc plots show plots/sweep.json -x split.labeled_fraction -y mean   # with one metric selected by --metrics
    python -m weakalign.aggregate ... --out-chart reports/sweep_charts.md   # Mermaid charts for a README

Without --input it runs `dvc exp show --json` in the current directory (HEAD's experiments; save the JSON yourself
for other revisions: experiments of different baselines that share params are pooled). Experiments are grouped by
every param except the seed (`--seed-key`, default `base.seed`); the leading columns are the params that vary.
Each cell is mean ± half-width of the 95% interval of the mean, Student's t with n - 1 degrees of freedom
(`analysis.stats.t_interval`, exact quantile). One run gives no interval (null in the JSON, "1 run, no interval" in
the table). The JSON has one row per configuration and metric: the varying params, `config` (their label),
`metric`, `n`, `mean`, `std`, `ci_low`, `ci_high`.

Counted: the experiments under each baseline commit (plus the baseline commits themselves with
--include-baselines). Never the workspace: after `dvc exp run` it holds a copy of the last experiment. Queued,
running and failed experiments, and those without numeric metrics, are skipped and listed. A param missing from
a run counts as null. Param keys of params.yaml are dotted (`split.labeled_fraction`), those of other params
files are prefixed with the file (`other.yaml:key`); metric keys always are (`metrics/headline.json:agreement`).
The metrics are DVC's declared ones: the ten numbers of metrics/headline.json (dvc.yaml).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from weakalign.analysis.report import md
from weakalign.analysis.stats import t_interval
from weakalign.cli import setup_logging
from weakalign.records.io import DataError, atomic_file, read_json, write_json

log = logging.getLogger("weakalign.aggregate")  # not __name__: that is "__main__" under `python -m`

SKIP_STATES = ("queued", "running", "failed")  # metrics absent, partial, or stale (a failed run shows old ones)


class AggregateError(Exception):
    """Bad input: the message is the one line the CLI prints."""


@dataclass
class ExpRun:  # one finished experiment of `dvc exp show`: its params and numeric metrics
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]


def over_runs(xs: list[float]) -> dict[str, Any]:
    """n, mean, sample std and the 95% Student-t interval of the mean (stats.t_interval, the project's one
    interval function); std and interval are null below 2 runs."""
    mean, lo, hi = t_interval(xs)
    return {"n": len(xs), "mean": mean, "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "ci_low": lo, "ci_high": hi}


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _files(results: dict | None, default: str | None) -> dict[str, Any]:
    """{file: {"data": nested}} -> dotted keys, `file:` in front unless file is `default`; errored files drop."""
    out: dict[str, Any] = {}
    for path, res in (results or {}).items():
        for k, v in _flatten((res or {}).get("data") or {}).items():
            out[k if path == default else f"{path}:{k}" if k else path] = v
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def collect(exp_show: Any, include_baselines: bool = False) -> tuple[list[ExpRun], list[tuple[str, str]]]:
    """Runs with metrics, and (name, reason) of every skipped experiment, from `dvc exp show --json`."""
    if not isinstance(exp_show, list) or not all(isinstance(s, dict) and "rev" in s for s in exp_show):
        raise AggregateError("not the output of `dvc exp show --json` (expected a list of revisions)")
    try:
        return _collect(exp_show, include_baselines)
    except (AttributeError, TypeError) as e:  # a list of revisions, but not shaped like DVC 3.x's
        raise AggregateError(f"unexpected `dvc exp show --json` layout ({e})") from None


def _collect(exp_show: list[dict], include_baselines: bool) -> tuple[list[ExpRun], list[tuple[str, str]]]:
    candidates = []  # (name, executor state, ExpState)
    for base in exp_show:
        if base["rev"] == "workspace":
            continue
        if include_baselines:
            candidates.append((base.get("name") or str(base["rev"])[:7], None, base))
        for rng in base.get("experiments") or []:
            head = (rng.get("revs") or [{}])[0]  # later revs of a range are its older commits
            name = rng.get("name") or head.get("name") or str(head.get("rev", "?"))[:7]
            candidates.append((name, (rng.get("executor") or {}).get("state"), head))
    runs, skipped = [], []
    for name, state, exp in candidates:
        data = exp.get("data") or {}
        metrics = {k: v for k, v in _files(data.get("metrics"), None).items() if _is_number(v)}
        if state in SKIP_STATES:
            skipped.append((name, state))
        elif exp.get("error"):
            skipped.append((name, f"error: {exp['error'].get('msg', '')}"))
        elif not metrics:
            skipped.append((name, "no numeric metrics"))
        else:
            runs.append(ExpRun(name, _files(data.get("params"), "params.yaml"), metrics))
    return runs, skipped


def _key(v: Any) -> tuple:
    """Sorts mixed values: null first, then numbers by value, then everything else by its JSON text."""
    return (0, 0.0) if v is None else (1, float(v)) if _is_number(v) else (2, json.dumps(v, sort_keys=True))


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in params.items()) or "all runs"


def aggregate(runs: list[ExpRun], seed_key: str, patterns: list[str] | None) -> tuple[list[str], list[str], list[dict]]:
    """(varying params, metrics, one dict per configuration with its params, seeds and stats per metric)."""
    if not any(seed_key in r.params for r in runs):
        log.warning("no experiment has the param %s (--seed-key): runs are grouped by all their params", seed_key)
    keys = sorted({k for r in runs for k in r.params} - {seed_key})
    varying = [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in runs}) > 1]
    every = sorted({k for r in runs for k in r.metrics})
    metrics = every
    if patterns:
        metrics = []
        for p in patterns:
            hits = [k for k in every if fnmatch.fnmatchcase(k, p)]
            if not hits:
                raise AggregateError(f"--metrics {p!r} matches no numeric metric")
            metrics += [k for k in hits if k not in metrics]
    groups: dict[str, list[ExpRun]] = {}
    for r in runs:
        groups.setdefault(json.dumps([r.params.get(k) for k in varying], sort_keys=True), []).append(r)
    configs = []
    for members in groups.values():
        params = {k: members[0].params.get(k) for k in varying}
        configs.append({"params": params, "seeds": sorted((r.params.get(seed_key) for r in members), key=_key),
                        "stats": {m: over_runs([r.metrics[m] for r in members if m in r.metrics]) for m in metrics}})
    configs.sort(key=lambda c: [_key(c["params"][k]) for k in varying])
    return varying, metrics, configs


def _cell(s: dict[str, Any]) -> str:
    if s["n"] == 0:
        return "n/a"
    if s["ci_low"] is None:
        return f"{s['mean']:.4g} (1 run, no interval)"
    return f"{s['mean']:.4g} ± {(s['ci_high'] - s['ci_low']) / 2:.4g} ({s['n']})"


def markdown(varying: list[str], metrics: list[str], configs: list[dict], skipped: list[tuple[str, str]],
             seed_key: str) -> str:
    n_runs = sum(len(c["seeds"]) for c in configs)
    head = [*(varying or ["configuration"]), "runs", seed_key, *metrics]
    lines = ["# Sweep: mean ± 95% confidence interval per configuration", "",
             f"{n_runs} experiments in {len(configs)} configurations, grouped by every param except "
             f"{md(seed_key)}. Cell: mean ± half-width of the 95% interval of the mean (Student's t), "
             "then the number of runs with that metric.", "",
             "| " + " | ".join(md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for c in configs:
        lead = [md(_show(c["params"][k])) for k in varying] or ["all runs"]
        cells = [*lead, str(len(c["seeds"])), md(", ".join(_show(s) for s in c["seeds"])),
                 *(_cell(c["stats"][m]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    for c in configs:  # same config and seed twice: this pipeline reruns bit-identically, so not independent
        twice = sorted({_show(x) for x in c["seeds"] if c["seeds"].count(x) > 1})
        if twice:
            lines += ["", f"Note: {md(_label(c['params']))} has {md(seed_key)} {md(', '.join(twice))} more than "
                      "once; repeated runs of one seed are not independent and make its interval too narrow."]
    lines += ["", f"## Skipped experiments ({len(skipped)})", ""]
    lines += [f"- {md(name)}: {md(reason)}" for name, reason in skipped] or ["None."]
    return "\n".join(lines) + "\n"


def mermaid_charts(varying: list[str], metrics: list[str], configs: list[dict]) -> str:
    """One Mermaid `xychart-beta` per metric, configurations along x: bars are the means, the two lines the 95%
    interval's bounds (a bound is the mean where there is no interval). Renders on GitHub without any plotting
    dependency; `dvc plots` reads the JSON rows for interactive plots."""
    xs = [md(_label(c["params"])) if len(varying) != 1 else _show(c["params"][varying[0]]) for c in configs]
    out = []
    for m in metrics:
        stats = [c["stats"][m] for c in configs]
        if not any(s["n"] for s in stats):
            continue
        mean = [s["mean"] if s["n"] else 0.0 for s in stats]
        lo = [s["ci_low"] if s["ci_low"] is not None else v for s, v in zip(stats, mean, strict=True)]
        hi = [s["ci_high"] if s["ci_high"] is not None else v for s, v in zip(stats, mean, strict=True)]
        axis = varying[0] if len(varying) == 1 else "configuration"
        nums = ", ".join
        out += [f"**{md(m)}**: bars = mean, lines = 95% interval (n = "
                f"{', '.join(str(s['n']) for s in stats)} runs)", "", "```mermaid", "xychart-beta",
                f'    x-axis "{axis}" [{", ".join(f"{chr(34)}{x}{chr(34)}" for x in xs)}]',
                f'    y-axis "{m.rpartition(":")[2]}"',
                f"    bar [{nums(f'{v:.4g}' for v in mean)}]", f"    line [{nums(f'{v:.4g}' for v in lo)}]",
                f"    line [{nums(f'{v:.4g}' for v in hi)}]", "```", ""]
    return "\n".join(out)


def rows(configs: list[dict]) -> list[dict]:
    """Long-format rows for `dvc plots`: one per configuration and metric that has at least one value."""
    out = []
    for c in configs:
        out += [{**c["params"], "config": _label(c["params"]), "metric": m, **s}
                for m, s in c["stats"].items() if s["n"]]
    return out


def load(path: str | None) -> Any:
    if path is not None:
        try:
            return read_json(path)
        except DataError as e:
            raise AggregateError(str(e)) from None
    # The same interpreter's dvc, so it works without an activated venv.
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise AggregateError(f"`dvc exp show --json` failed (exit {proc.returncode}): {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise AggregateError(f"`dvc exp show --json` printed malformed JSON ({e.msg})") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weakalign.aggregate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="saved `dvc exp show --json` output (default: run it here)")
    p.add_argument("--out-md", required=True, help="Markdown table, e.g. reports/sweep.md")
    p.add_argument("--out-json", required=True, help="plot rows, e.g. plots/sweep.json")
    p.add_argument("--seed-key", default="base.seed", help="the param that is not a configuration (base.seed)")
    p.add_argument("--metrics", nargs="+", help="dotted metric keys or globs (default: every numeric metric)")
    p.add_argument("--include-baselines", action="store_true", help="count the baseline commits as runs too")
    p.add_argument("--out-chart", help="also write Mermaid bar charts with interval lines, one per metric (Markdown)")
    args = p.parse_args(argv)
    setup_logging()
    source = args.input or "`dvc exp show --json`"
    try:
        runs, skipped = collect(load(args.input), args.include_baselines)
        for name, reason in skipped:
            log.warning("skipped experiment %s: %s", name, reason)
        if not runs and not skipped:
            raise AggregateError(f"no experiments in {source}: run `dvc exp run` first")
        if not runs:
            why = ", ".join(sorted({reason for _, reason in skipped}))
            raise AggregateError(f"none of the {len(skipped)} experiments in {source} has metrics ({why})")
        varying, metrics, configs = aggregate(runs, args.seed_key, args.metrics)
    except AggregateError as e:
        print(f"aggregate: error: {e}", file=sys.stderr)
        return 2
    with atomic_file(args.out_md) as f:
        f.write(markdown(varying, metrics, configs, skipped, args.seed_key))
    write_json(args.out_json, rows(configs))
    if args.out_chart:
        with atomic_file(args.out_chart) as f:
            f.write(mermaid_charts(varying, metrics, configs))
    log.info("%d runs in %d configurations, %d metrics, %d skipped -> %s, %s", len(runs), len(configs),
             len(metrics), len(skipped), args.out_md, args.out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
