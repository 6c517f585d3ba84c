"""Stage label_judge: the `judge` labeler. The base model, asked zero-shot which response is better, in both
orders; a pair whose two orders disagree is a tie.

    python stages/label_judge.py --base ${paths.base_model} --unlabeled ${paths.unlabeled} \
        --out ${paths.judge_labels} --metrics ${paths.metrics}/label_judge.json \
        --checkpoints ${paths.checkpoints}/label_judge

The prompt and the scoring are in weakalign.labelers.pairwise_judge. The metrics file records ties, position bias (share
of "A" answers), prompts too long to judge, and the labeling cost (wall time and estimated forward FLOPs per
1,000 pairs). Finished batches are appended to --checkpoints; a killed run resumes after the last one. With
`label_judge.enabled: false` the labels folder holds only a README, and the metrics are null (same keys).
"""

import logging
import time

from weakalign.cli import seed_everything, stage
from weakalign.labelers.labeling import cost, label_1_share, switched_off
from weakalign.records import resume
from weakalign.records.io import read_jsonl, write_metrics, write_records
from weakalign.records.schema import Pair

log = logging.getLogger("weakalign.label_judge")

KEYS = ("n_pairs", "n_decided", "n_ties", "n_too_long", "tie_share", "a_share", "label_1_share", "label_seconds",
        "label_seconds_per_1000_pairs", "label_tflops_per_1000_pairs")


def main(args, params):
    cfg = params.label_judge
    if not cfg.enabled:
        log.info("label_judge.enabled is false: no labels")
        return switched_off("label_judge", args.out, args.metrics, args.checkpoints, KEYS)
    seed_everything(params.base.seed)
    from weakalign.labelers.pairwise_judge import judge_pairs
    from weakalign.modeling.models import load_model, load_tokenizer, n_params, tflop
    unlabeled = read_jsonl(args.unlabeled, Pair)
    tok, model = load_tokenizer(args.base), load_model(args.base)
    n = n_params(model)
    pairs = [(p.id, p.prompt, p.response_1, p.response_2) for p in unlabeled]
    work = resume.prepare(args.checkpoints, resume.fingerprint(
        "label_judge", cfg.model_dump(), params.base.seed, pairs, resume.files_digest(args.base)))
    partial = resume.BatchLog(work / "log_odds.jsonl")
    t0 = time.perf_counter()
    v = judge_pairs(model, tok, pairs, cfg.batch_size, cfg.max_length, cfg.bf16, partial)
    seconds = time.perf_counter() - t0
    partial.close()
    decided = [x for x in v.labels if x.label is not None]
    n_ties = len(v.labels) - len(decided) - v.n_too_long
    log.info("judged %d pairs: %d decided, %d ties, %d too long; 'A' answered %s of the time", len(pairs),
             len(decided), n_ties, v.n_too_long, v.a_share)
    write_records(args.out, v.labels)
    write_metrics(args.metrics, {
        "enabled": True, "n_pairs": len(pairs), "n_decided": len(decided), "n_ties": n_ties,
        "n_too_long": v.n_too_long, "tie_share": round(n_ties / max(1, len(pairs) - v.n_too_long), 4),
        "a_share": v.a_share,
        "label_1_share": label_1_share(decided), **cost(seconds, tflop(n, v.n_tokens), len(pairs)),
    })
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
