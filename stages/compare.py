"""Stage compare: human vs weak labels on D_u against the gold judge; every feedback source's labels for align.

    python stages/compare.py --labeled data/split/labeled.jsonl --unlabeled data/split/unlabeled.jsonl \
        --weak data/labels/weak.jsonl --feedback data/feedback --metrics metrics/feedback.json \
        --plot plots/agreement_by_margin.json
"""

import argparse
import logging

from weakalign.cli import run
from weakalign.compare import check_covers, feedback_labels, feedback_metrics
from weakalign.io import atomic_dir, iter_jsonl, read_jsonl, write_json, write_jsonl
from weakalign.schema import Pair, WeakLabel

log = logging.getLogger("weakalign.compare")


def main(args, params):
    n_labeled = sum(1 for _ in iter_jsonl(args.labeled))
    unlabeled = read_jsonl(args.unlabeled, Pair)
    weak = {w.pair_id: w for w in read_jsonl(args.weak, WeakLabel)}
    check_covers(unlabeled, weak, args.weak)
    metrics, rows = feedback_metrics(n_labeled, unlabeled, weak, params.compare.margin_bins)
    log.info("weak-human agreement %.3f; vs gold: human %s, weak %s", metrics["agreement_weak_human"],
             metrics["accuracy_human_vs_gold"], metrics["accuracy_weak_vs_gold"])
    with atomic_dir(args.feedback) as tmp:
        for source in params.align.sources:
            labels = feedback_labels(unlabeled, weak, source, params.base.seed, params.compare.confident_margin)
            if not labels:
                raise ValueError(f"align.sources: feedback source {source!r} keeps no D_u pair (weak_disagree: "
                                 "weak and human always agree; weak_confident: lower compare.confident_margin)")
            metrics[f"n_feedback_{source}"] = len(labels)
            write_jsonl(tmp / f"{source}.jsonl", labels)
    write_json(args.metrics, metrics)
    write_json(args.plot, rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="compare", description=__doc__)
    for a in ("--labeled", "--unlabeled", "--weak", "--feedback", "--metrics", "--plot"):
        p.add_argument(a, required=True)
    raise SystemExit(run(main, p))
