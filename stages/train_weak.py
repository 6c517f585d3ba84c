"""Stage train_weak: DPO-train the weak LLM on D_l with its human labels (TRL DPOTrainer).

    python stages/train_weak.py --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --sft-weak ${paths.sft_weak} --labeled ${paths.labeled} --out ${paths.weak_model} \
        --metrics ${paths.metrics}/train_weak.json --live ${paths.dvclive}/train_weak \
        --checkpoints ${paths.checkpoints}/train_weak

`train_weak.model` picks the weak LLM (`base` = the output of base_model; its SFT output when `sft.enabled`); `train_weak.dpo` is TRL's DPOConfig;
`train_weak.lora.use_peft` trains LoRA adapters instead (--out then holds the adapter, on the starting point).
`train_weak.label_noise` inverts that share of D_l's human labels first (seeded): a weaker teacher, D_u untouched.
Checkpoints go to --checkpoints every `dpo.save_steps` steps; a killed run resumes from the newest one.
"""

import logging

from weakalign.cli import seed_everything, stage
from weakalign.data.split import flip_labels
from weakalign.records import resume
from weakalign.records.io import atomic_dir, read_jsonl, write_metrics
from weakalign.records.schema import Pair

log = logging.getLogger("weakalign.train_weak")


def main(args, params):
    # torch, transformers and trl load here, not at the top, so that --help answers at once.
    from weakalign.modeling.models import load_model, load_tokenizer
    from weakalign.modeling.saved_models import model_card, save_model
    from weakalign.training import dpo

    seed_everything(params.base.seed)
    ref = params.weak_start(args.base, args.sft_target, args.sft_weak)
    labeled = read_jsonl(args.labeled, Pair)
    tok = load_tokenizer(ref, params.base.trust_remote_code)
    model = load_model(ref, trust_remote_code=params.base.trust_remote_code)
    labels = flip_labels(labeled, params.train_weak.label_noise, params.base.seed)
    flipped = sum(labels[p.id] != p.human for p in labeled if p.id in labels)
    log.info("DPO on %d human-labeled pairs from %s (%d labels flipped: train_weak.label_noise %s)", len(labels),
             ref, flipped, params.train_weak.label_noise)
    model, summary = dpo.train(model, tok, dpo.triples(labeled, labels),
                               params.train_weak.dpo, params.base.seed, args.live, args.checkpoints,
                               resume.files_digest(ref), params.train_weak.lora)
    if not resume.is_main_process():  # under accelerate launch the first process writes
        return
    with atomic_dir(args.out) as tmp:
        card = model_card("train_weak", ref, params.train_weak.dpo.values(), {"D_l": args.labeled},
                          adapter=params.train_weak.lora.use_peft)
        save_model(model, tok, tmp, base=ref, card=card)  # under LoRA only the adapter, naming `ref` as its base
    write_metrics(args.metrics, {"model": params.train_weak.model, **summary})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__, distributed=lambda params: True))
