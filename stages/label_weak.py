"""Stage label_weak: the weak teacher labels every D_u pair with its DPO implicit reward.

    python stages/label_weak.py --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --sft-weak ${paths.sft_weak} --weak ${paths.weak_model} --unlabeled ${paths.unlabeled} \
        --out ${paths.weak_labels} --metrics ${paths.metrics}/label_weak.json \
        --checkpoints ${paths.checkpoints}/label_weak

r(x, y) = beta * [log pi_weak(y|x) - log pi_ref(y|x)], pi_ref = the weak model's starting point (Params.weak_start), beta =
`train_weak.dpo.beta`, tokenized with `train_weak.dpo.max_length`; `label_weak.bf16` picks bf16 autocast (fast) or
exact fp32. If --weak is a LoRA adapter, pi_ref is its base with the adapter switched off (one model in memory).
The response with the higher reward is the weak label. The metrics file records the
labeling cost (wall time and estimated forward FLOPs per 1,000 pairs) and how many pairs `max_length` truncated. Finished batches are
appended to --checkpoints as they complete; a killed run resumes after the last one (its timing then covers only
the resumed part).
"""

import logging
import time

from weakalign.cli import seed_everything, stage
from weakalign.labelers.labeling import cost, label_1_share
from weakalign.records import resume
from weakalign.records.io import read_jsonl, write_jsonl, write_metrics
from weakalign.records.schema import Pair, WeakLabel

log = logging.getLogger("weakalign.label_weak")


def main(args, params):
    # torch, transformers and trl load here, not at the top, so that --help answers at once.
    from weakalign.labelers.rewards import implicit_rewards
    from weakalign.modeling.models import attach_adapter, is_adapter, load_model, load_tokenizer, n_params, tflop

    seed_everything(params.base.seed)
    ref_path = params.weak_start(args.base, args.sft_target, args.sft_weak)
    unlabeled = read_jsonl(args.unlabeled, Pair)
    tok = load_tokenizer(args.weak)
    if is_adapter(args.weak):  # LoRA: one model; the reference is the starting point with the adapter off
        policy = attach_adapter(load_model(ref_path, trust_remote_code=params.base.trust_remote_code), args.weak)
        ref = None
    else:
        policy = load_model(args.weak)
        ref = load_model(ref_path, trust_remote_code=params.base.trust_remote_code)
    t0 = time.perf_counter()
    triples = [(p.prompt, p.response_1, p.response_2) for p in unlabeled]
    dpo = params.train_weak.dpo.model_copy(update={"bf16": params.label_weak.bf16})
    work = resume.prepare(args.checkpoints, resume.fingerprint(
        "label_weak", dpo.model_dump(), params.label_weak.model_dump(), params.base.seed, triples,
        resume.files_digest(args.weak), resume.files_digest(ref_path)))
    partial = resume.BatchLog(work / "rewards.jsonl")
    r1, r2, n_truncated, n_tokens = implicit_rewards(policy, ref, tok, triples, dpo, params.label_weak.batch_size,
                                                     params.base.seed, partial)
    partial.close()
    labels = [WeakLabel(pair_id=p.id, reward_1=round(a, 6), reward_2=round(b, 6), margin=round(a - b, 6),
                        label=1 if a >= b else 2) for p, a, b in zip(unlabeled, r1, r2, strict=True)]
    log.info("labeled %d pairs; response_1 chosen on %d", len(labels), sum(x.label == 1 for x in labels))
    seconds = time.perf_counter() - t0
    write_jsonl(args.out, labels)
    write_metrics(args.metrics, {"n_pairs": len(labels), "n_pairs_truncated": n_truncated,
                              "label_1_share": label_1_share(labels),
                              # Forward passes only, through the weak model and its reference.
                              **cost(seconds, tflop(2 * n_params(policy), n_tokens), len(labels))})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
