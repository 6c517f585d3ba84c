"""Stage report: reports/summary.md and the gold-reward plot data.

    python stages/report.py --feedback-metrics ${paths.metrics}/feedback.json \
        --alignment ${paths.metrics}/alignment.json --weak-metrics ${paths.metrics}/train_weak.json \
        --align-metrics ${paths.metrics}/align --weak-live ${paths.dvclive}/train_weak \
        --align-live ${paths.dvclive}/align --unlabeled ${paths.unlabeled} --weak ${paths.weak_labels} \
        --label-weak ${paths.metrics}/label_weak.json --label-rm ${paths.metrics}/label_rm.json \
        --label-judge ${paths.metrics}/label_judge.json --plot ${paths.plots}/gold_reward.json \
        --curves ${paths.plots}/training_curves.json --out ${paths.report} \
        --headline ${paths.metrics}/headline.json --agreement ${paths.plots}/agreement_by_margin.json \
        --figure ${paths.report_figure} --labeled ${paths.labeled} --test ${paths.prompts_test}

`--align-metrics` and `--align-live` are the folders of the `align@<source>` outputs, one `<source>.json` file
or `<source>/` folder each, as dvc.yaml's foreach names them.
"""

import logging
import os
from pathlib import Path

from weakalign.analysis.report import (disagreements, figure, gold_reward_rows, headline, provenance, summary_markdown,
                                       training_curves)
from weakalign.cli import stage
from weakalign.records.io import atomic_file, read_json, read_jsonl, read_metrics, write_json
from weakalign.records.schema import Pair, WeakLabel

log = logging.getLogger("weakalign.report")


def main(args, params):
    # The metrics with their bookkeeping (wall times, `learned`, the judge's name: weakalign.records.io.write_metrics).
    feedback = read_metrics(args.feedback_metrics)
    alignment = read_metrics(args.alignment)
    sources = params.align.sources
    training = {"weak teacher": read_metrics(args.weak_metrics)}
    training |= {f"target ({s})": read_metrics(Path(args.align_metrics) / f"{s}.json") for s in sources}
    unlabeled = read_jsonl(args.unlabeled, Pair)
    weak = {w.pair_id: w for w in read_jsonl(args.weak, WeakLabel)}
    # Every labeler's cost: the weak teacher's training is its own stage, so its time is added here.
    cost = {"weak": {**read_metrics(args.label_weak), "train_seconds": training["weak teacher"]["train_seconds"]},
            "rm": read_metrics(args.label_rm), "judge": read_metrics(args.label_judge)}
    head = headline(feedback, alignment)
    gold_rows = gold_reward_rows(alignment)
    figure(gold_rows, read_json(args.agreement), Path(args.figure))
    where = provenance(args.params, params.base.model, params.train_weak.model,
                       {"D_l": args.labeled, "D_u": args.unlabeled, "test prompts": args.test})
    text = summary_markdown(feedback, alignment, training, disagreements(unlabeled, weak, params.report.n_examples),
                            cost, head, os.path.relpath(args.figure, Path(args.out).parent), where)
    with atomic_file(args.out) as f:
        f.write(text)
    write_json(args.headline, head)
    write_json(args.plot, gold_rows)
    runs = {"weak teacher": Path(args.weak_live)} | {f"target ({s})": Path(args.align_live) / s for s in sources}
    write_json(args.curves, training_curves(runs))


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
