"""Stage report: reports/summary.md and the gold-reward plot data.

    python stages/report.py --feedback-metrics metrics/feedback.json --alignment metrics/alignment.json \
        --train-metrics metrics --unlabeled data/split/unlabeled.jsonl --weak data/labels/weak.jsonl \
        --live dvclive --plot plots/gold_reward.json --curves plots/training_curves.json --out reports/summary.md
"""

import argparse
import logging
from pathlib import Path

from weakalign.cli import run
from weakalign.io import atomic_file, read_json, read_jsonl, write_json
from weakalign.report import disagreements, gold_reward_rows, summary_markdown, training_curves
from weakalign.schema import Pair, WeakLabel

log = logging.getLogger("weakalign.report")


def main(args, params):
    feedback = read_json(args.feedback_metrics)
    alignment = read_json(args.alignment)
    metrics_dir = Path(args.train_metrics)
    training = {"weak teacher": read_json(metrics_dir / "train_weak.json")}
    training |= {f"target ({s})": read_json(metrics_dir / "align" / f"{s}.json") for s in params.align.sources}
    unlabeled = read_jsonl(args.unlabeled, Pair)
    weak = {w.pair_id: w for w in read_jsonl(args.weak, WeakLabel)}
    text = summary_markdown(feedback, alignment, training, disagreements(unlabeled, weak, params.report.n_examples))
    with atomic_file(args.out) as f:
        f.write(text)
    write_json(args.plot, gold_reward_rows(alignment))
    runs = {"weak teacher": "train_weak"} | {f"target ({s})": f"align/{s}" for s in params.align.sources}
    write_json(args.curves, training_curves(Path(args.live), runs))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="report", description=__doc__)
    for a in ("--feedback-metrics", "--alignment", "--train-metrics", "--unlabeled", "--weak", "--live", "--plot",
              "--curves", "--out"):
        p.add_argument(a, required=True)
    raise SystemExit(run(main, p))
