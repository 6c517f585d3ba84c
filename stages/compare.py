"""Stage compare: human vs weak labels on D_u against the gold judge, the other labelers beside them; every
feedback source's labels for align.

    python stages/compare.py --labeled ${paths.labeled} --unlabeled ${paths.unlabeled} \
        --weak ${paths.weak_labels} --rm ${paths.rm_labels} --judge ${paths.judge_labels} \
        --feedback ${paths.feedback} --metrics ${paths.metrics}/feedback.json \
        --plot ${paths.plots}/agreement_by_margin.json

--rm and --judge are the labelers' folders (weakalign.records.io.write_records): one holding only a README means
that labeler is off (label_rm/label_judge.enabled), and its metrics are null.
"""

import logging

from weakalign.analysis.compare import (check_covers, feedback_labels, feedback_metrics, judge_feedback_label,
                                        labeler_metrics, source_metrics)
from weakalign.cli import stage
from weakalign.records.io import (atomic_dir, iter_jsonl, read_jsonl, read_records, records_path, write_json,
                                  write_jsonl, write_metrics)
from weakalign.records.schema import JudgeLabel, Pair, WeakLabel

log = logging.getLogger("weakalign.compare")


def main(args, params):
    n_labeled = sum(1 for _ in iter_jsonl(args.labeled))
    unlabeled = read_jsonl(args.unlabeled, Pair)
    weak = {w.pair_id: w for w in read_jsonl(args.weak, WeakLabel)}
    check_covers(unlabeled, weak, args.weak)
    metrics, rows = feedback_metrics(n_labeled, unlabeled, weak, params.compare.margin_bins)
    # No records: that labeler is switched off (label_rm/label_judge.enabled).
    rm = {x.pair_id: x.label for x in read_records(args.rm, WeakLabel) or []}
    judge = {x.pair_id: x for x in read_records(args.judge, JudgeLabel) or []}
    for name, folder, labels in (("rm", args.rm, rm), ("judge", args.judge, judge)):
        if labels:
            check_covers(unlabeled, labels, records_path(folder), name)
    metrics.update(labeler_metrics(unlabeled, weak, "rm", rm))
    metrics.update(labeler_metrics(unlabeled, weak, "judge", {k: x.label for k, x in judge.items()}))
    # What `align@judge` trains on: the verdicts, ties left out unless label_judge.break_ties.
    others = {"rm": rm, "judge": {k: judge_feedback_label(x, params.label_judge.break_ties) for k, x in judge.items()}}
    log.info("weak-human agreement %.3f; vs gold: human %s, weak %s", metrics["agreement_weak_human"],
             metrics["accuracy_human_vs_gold"], metrics["accuracy_weak_vs_gold"])
    with atomic_dir(args.feedback) as tmp:
        for source in params.align.sources:
            labels = feedback_labels(unlabeled, weak, source, params.base.seed, params.compare.confident_margin,
                                     others, params.compare.confident_weighting)
            if not labels:
                raise ValueError(f"align.sources: feedback source {source!r} keeps no D_u pair (weak_disagree: "
                                 "weak and human always agree; weak_confident: lower compare.confident_margin; "
                                 "judge: every pair is a tie)")
            metrics[f"n_feedback_{source}"] = len(labels)
            metrics.setdefault("sources", {})[source] = source_metrics(unlabeled, labels)
            # `weight` only where it is not 1: unweighted feedback files keep their two fields.
            write_jsonl(tmp / f"{source}.jsonl", [f.model_dump(exclude_defaults=True) for f in labels])
    write_metrics(args.metrics, metrics)
    write_json(args.plot, rows)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
