"""`python -m weakalign.study {plan,run,report}` (also `weakalign study ...`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from weakalign.cli import setup_logging
from weakalign.config.params import load_params
from weakalign.preset import flow
from weakalign.study import __doc__ as USAGE
from weakalign.study.planning import file_overrides, plan, shard
from weakalign.study.rendering import report
from weakalign.study.running import run_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weakalign.study", description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("plan", help="print the runs and the params each sets")
    r_ = sub.add_parser("run", help="run every missing or stale run, one at a time")
    r_.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (names from `plan`)")
    for sp in (pl, r_):
        sp.add_argument("--shard", metavar="I/N", help="only the I-th of N machines' share: whole seeds, the k-th "
                        "seed to shard k mod N + 1 (docs/STUDY.md, \"On several machines\")")
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
    setup_logging()
    try:
        params = load_params(args.params)
        if args.command == "plan":
            for run, overrides in shard(plan(params, file_overrides(Path(args.params))), args.shard).items():
                print(run, " ".join(f"-S {k}={flow(v)}" for k, v in overrides.items()))
            return 0
        if args.command == "run":
            return 1 if run_all(params, Path(args.params), args.only, args.commit, args.dvc, args.jobs,
                                 not args.no_fingerprint, args.shard) else 0
        report(params, Path(args.params), args.metrics, args.out, args.plot)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    return 0
