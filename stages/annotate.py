"""Stage annotate: the gold judge scores both responses; simulated humans pick one (noisy Bradley-Terry).

Real data (`data.source` jsonl / hf) keeps its own human labels; with `judge.name: none` the gold scores stay
null and so do the gold figures in the metrics.

    python stages/annotate.py --pairs ${paths.pairs} --out ${paths.annotated} \
        --metrics ${paths.metrics}/annotate.json
"""

import logging

from weakalign.analysis.stats import r
from weakalign.cli import stage
from weakalign.data.annotate import human_label
from weakalign.labelers.judge import make_judge
from weakalign.records.io import DataError, read_jsonl, write_jsonl, write_metrics
from weakalign.records.schema import Pair

log = logging.getLogger("weakalign.annotate")


def main(args, params):
    pairs = read_jsonl(args.pairs, Pair)
    judge = make_judge(params.judge)
    simulated = params.data.source == "sandbox"  # real data comes with its human labels
    if not simulated and any(p.human is None for p in pairs):
        raise DataError(f"{args.pairs}: pairs of data.source {params.data.source!r} must carry their human label")
    if judge is None:
        write_jsonl(args.out, pairs)
        write_metrics(args.metrics, {"gold_judge": "none", "n_pairs": len(pairs), "n_gold_ties": None,
                                  "accuracy_human_vs_gold": None, "mean_abs_gold_gap": None})
        return
    prompts = [p.prompt for p in pairs]
    g1 = judge.score(prompts, [p.response_1 for p in pairs])
    g2 = judge.score(prompts, [p.response_2 for p in pairs])
    out = []
    for p, a, b in zip(pairs, g1, g2, strict=True):
        scored = p.model_copy(update={"gold_1": a, "gold_2": b})
        if simulated:
            scored = scored.model_copy(update={"human": human_label(scored, params.annotate, params.base.seed)})
        out.append(scored)
    decided = [p for p in out if p.gold is not None]
    agree = sum(p.human == p.gold for p in decided) / max(len(decided), 1)
    log.info("human labels agree with the gold judge on %.1f%% of %d pairs", 100 * agree, len(decided))
    write_jsonl(args.out, out)
    write_metrics(args.metrics, {"gold_judge": judge.name, "n_pairs": len(out), "n_gold_ties": len(out) - len(decided),
                              "accuracy_human_vs_gold": r(agree),
                              "mean_abs_gold_gap": r(sum(abs(a - b) for a, b in zip(g1, g2)) / len(out))})


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
