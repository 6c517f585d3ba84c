"""Stage label_rm: the `rm` labeler. Train a Bradley-Terry reward model on D_l (TRL RewardTrainer), label D_u.

    python stages/label_rm.py --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --sft-weak ${paths.sft_weak} --labeled ${paths.labeled} --unlabeled ${paths.unlabeled} \
        --out ${paths.rm_labels} --metrics ${paths.metrics}/label_rm.json --live ${paths.dvclive}/label_rm \
        --checkpoints ${paths.checkpoints}/label_rm

The reward model starts from the weak teacher's starting point (`train_weak.model`) and trains on the same human
labels with `label_rm.reward` (TRL's RewardConfig). The response with the higher reward is the label. The
metrics file records training and labeling cost (seconds, and estimated FLOPs: 6 N per training token, 2 N per
scored token). With `label_rm.enabled: false` the labels folder holds only a README, and the metrics are null (same
keys).
"""

import logging
import time
from pathlib import Path

from weakalign.cli import seed_everything, stage
from weakalign.labelers.labeling import cost, label_1_share, switched_off
from weakalign.records import resume
from weakalign.records.io import read_jsonl, write_metrics, write_records
from weakalign.records.schema import Pair, WeakLabel

log = logging.getLogger("weakalign.label_rm")

KEYS = ("n_pairs", "label_1_share", "n_train_pairs", "n_train_pairs_dropped_too_long", "steps", "final_loss",
        "final_accuracy", "final_margin", "learned", "num_processes", "resumed_from_step", "train_seconds", "train_tflops",
        "label_seconds", "label_seconds_per_1000_pairs", "label_tflops_per_1000_pairs")


def main(args, params):
    cfg = params.label_rm
    Path(args.live).mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        log.info("label_rm.enabled is false: no reward model, no labels")
        # A file, so that git keeps the (otherwise empty) curves folder and a fresh checkout is up to date.
        (Path(args.live) / "README").write_text("label_rm.enabled is false: no reward model was trained.\n")
        return switched_off("label_rm", args.out, args.metrics, args.checkpoints, ("model", *KEYS))
    seed_everything(params.base.seed)
    from weakalign.labelers.reward_model import score_pairs, train
    from weakalign.modeling.models import n_params, reward_model_from_lm, tflop
    ref = params.weak_start(args.base, args.sft_target, args.sft_weak)
    labeled, unlabeled = read_jsonl(args.labeled, Pair), read_jsonl(args.unlabeled, Pair)
    model, tok = reward_model_from_lm(ref, params.base.seed, params.base.trust_remote_code)
    n = n_params(model)
    log.info("reward model from %s: Bradley-Terry on %d human-labeled pairs", ref, len(labeled))
    chosen = {p.id: p.human for p in labeled}
    triples = [(p.prompt, *((p.response_1, p.response_2) if chosen[p.id] == 1 else (p.response_2, p.response_1)))
               for p in labeled]
    model, summary = train(model, tok, triples, cfg.reward, params.base.seed, args.live, args.checkpoints,
                           resume.files_digest(ref), cfg.lora)
    if not resume.is_main_process():  # under accelerate launch the first process scores and writes
        return
    t0 = time.perf_counter()
    r1, r2, n_tokens = score_pairs(model, tok, [(p.prompt, p.response_1, p.response_2) for p in unlabeled],
                                   cfg.batch_size, cfg.reward.max_length)
    seconds = time.perf_counter() - t0
    labels = [WeakLabel(pair_id=p.id, reward_1=a, reward_2=b, margin=round(a - b, 6), label=1 if a >= b else 2)
              for p, a, b in zip(unlabeled, r1, r2, strict=True)]
    log.info("labeled %d pairs; response_1 chosen on %d", len(labels), sum(x.label == 1 for x in labels))
    write_records(args.out, labels)
    write_metrics(args.metrics, {
        "enabled": True, "model": params.train_weak.model, "n_pairs": len(labels),
        "label_1_share": label_1_share(labels),
        **{k: summary[k] for k in ("n_train_pairs", "n_train_pairs_dropped_too_long", "steps", "final_loss",
                                   "final_accuracy", "final_margin", "learned", "num_processes", "resumed_from_step",
                                   "train_seconds")},
        "train_tflops": round(tflop(n, summary["train_tokens"], train=True), 2),
        **cost(seconds, tflop(n, n_tokens), len(labels)),
    })
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__, distributed=lambda params: params.label_rm.enabled))
