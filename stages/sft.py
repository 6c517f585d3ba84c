"""Stage sft: supervised fine-tuning of the target's (and the weak LLM's) starting point on D_l's chosen responses.

    python stages/sft.py --base ${paths.base_model} --labeled ${paths.labeled} --target-out ${paths.sft_target} \
        --weak-out ${paths.sft_weak} --metrics ${paths.metrics}/sft.json --live ${paths.dvclive}/sft \
        --checkpoints ${paths.checkpoints}/sft

Off (`sft.enabled: false`, the default) it writes a note in each output folder and null metrics in about a
second; the later stages then start from the models as they are (`Params.target_start`, `Params.weak_start`).
On, the target's starting point (--base) is fine-tuned with TRL's SFTTrainer (`sft.sft` are SFTConfig fields,
`sft.lora` switches LoRA on); so is `train_weak.model` when it is another model than `base`, else the weak LLM
starts from the fine-tuned target. Checkpoints go to --checkpoints/<role>; a killed run resumes.
"""

import logging
from pathlib import Path

from weakalign.cli import seed_everything, stage
from weakalign.records import resume
from weakalign.records.io import atomic_dir, read_jsonl, write_metrics
from weakalign.records.schema import Pair

log = logging.getLogger("weakalign.sft")
KEYS = ("n_examples", "n_examples_truncated", "steps", "first_loss", "final_loss", "final_token_accuracy",
        "train_seconds", "train_tflops", "num_processes", "resumed_from_step")


def _note(out: str, text: str) -> dict:
    if resume.is_main_process():
        with atomic_dir(out) as tmp:  # a folder with a note, so the output exists and git/DVC keep it
            (Path(tmp) / "README").write_text(text + "\n")
    return dict.fromkeys(KEYS)


def _finetune(ref: str, role: str, examples, args, params) -> dict:
    from weakalign.modeling.models import load_model, load_tokenizer, n_params, tflop
    from weakalign.modeling.saved_models import model_card, save_model
    from weakalign.training import sft

    tok = load_tokenizer(ref, params.base.trust_remote_code)
    model = load_model(ref, trust_remote_code=params.base.trust_remote_code)
    n = n_params(model)
    log.info("SFT of the %s's starting point %s on %d chosen responses", role, ref, len(examples))
    model, summary = sft.train(model, tok, examples, params.sft.sft, params.base.seed, Path(args.live) / role,
                               Path(args.checkpoints) / role, resume.files_digest(ref), params.sft.lora)
    if resume.is_main_process():  # under accelerate launch the first process writes
        with atomic_dir(args.target_out if role == "target" else args.weak_out) as tmp:
            save_model(model, tok, tmp, base=ref, card=model_card(f"sft ({role})", ref, params.sft.sft.values(),
                                                                  {"D_l": args.labeled}, params.sft.lora.use_peft))
    return {**{k: summary.get(k) for k in KEYS}, "train_tflops": round(tflop(n, summary["train_tokens"], train=True), 2)}


def main(args, params):
    seed_everything(params.base.seed)
    weak_ref = params.train_weak.model_ref(args.base)
    Path(args.live).mkdir(parents=True, exist_ok=True)
    if not params.sft.enabled:
        # A file, so that git keeps the (otherwise empty) curves folder and a fresh checkout is up to date.
        (Path(args.live) / "README").write_text("sft.enabled is false: no fine-tuning was run.\n")
        log.info("sft.enabled is false: no fine-tuning; stages start from %s (target) and %s (weak)", args.base,
                 weak_ref)
        target = _note(args.target_out, "sft.enabled is false: the targets start from the base model.")
        weak = _note(args.weak_out, "sft.enabled is false: the weak LLM starts from train_weak.model.")
    else:
        labeled = read_jsonl(args.labeled, Pair)
        examples = [(p.prompt, p.response_1 if p.human == 1 else p.response_2) for p in labeled]
        target = _finetune(args.base, "target", examples, args, params)
        if params.train_weak.model == "base":
            weak = _note(args.weak_out, f"train_weak.model is base: the weak LLM starts from {args.target_out}.")
        else:
            weak = _finetune(weak_ref, "weak", examples, args, params)
    if not resume.is_main_process():
        return
    write_metrics(args.metrics, {"enabled": params.sft.enabled, **{f"target_{k}": v for k, v in target.items()},
                              **{f"weak_{k}": v for k, v in weak.items()}})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__, distributed=lambda params: params.sft.enabled))
