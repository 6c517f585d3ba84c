"""Supervised fine-tuning on the human-chosen responses of D_l, with TRL's `SFTTrainer` (stage `sft`).

DPO recipes for base models fine-tune on preferred responses first, so that the policy (and the DPO reference,
which is the starting point) puts real mass on answers of the right kind. The examples are conversational
prompt-completion rows (the chat template, or the plain HH format, as everywhere else), so with TRL's default
the loss covers the response tokens only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from . import resume
from .dpo import _Checkpoints, dvclive_curves, trainer_kwargs
from .generation import chat_prompt
from .models import check_lora_targets, lora_config
from .params import Lora, SFTFields

log = logging.getLogger(__name__)


def sft_dataset(pairs: list[tuple[str, str]]) -> Dataset:
    """(prompt, chosen response) texts -> TRL's conversational prompt-completion format."""
    return Dataset.from_list([{"prompt": chat_prompt(p), "completion": [{"role": "assistant", "content": c}]}
                              for p, c in pairs])


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], cfg: SFTFields,
          seed: int, live_dir: str | Path, work_dir: str | Path, model_id: str,
          lora: Lora | None = None) -> tuple[PreTrainedModel, dict]:
    """Fine-tune `model` (in place) on (prompt, chosen) pairs; return it and a summary for the metrics.

    Checkpoints, resume and dvclive curves work as in dpo.train; under `lora.use_peft` a PEFT model is returned.
    """
    torch.manual_seed(seed)
    check_lora_targets(model, lora)
    peft = lora_config(lora, "CAUSAL_LM") if lora is not None else None
    work = resume.prepare(work_dir, resume.fingerprint("sft", cfg.model_dump(), seed, pairs, model_id,
                                                       *([lora.model_dump()] if peft else [])))
    ckpt = resume.last_checkpoint(work)
    curves = dvclive_curves(live_dir)
    trainer = SFTTrainer(model=model, args=SFTConfig(**trainer_kwargs(cfg, seed, str(work))),
                         train_dataset=sft_dataset(pairs), processing_class=tok, callbacks=[curves, _Checkpoints()],
                         peft_config=peft)
    truncated = sum(len(ids) > cfg.max_length for ids in trainer.train_dataset["input_ids"]) if cfg.max_length else 0
    if truncated:
        log.warning("sft.sft.max_length %s truncates %d of %d examples", cfg.max_length, truncated, len(pairs))
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
        resume.replay(trainer, curves, ckpt)
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    history = [h for h in trainer.state.log_history if "loss" in h]
    first, last = history[:max(1, len(history) // 4)], history[-max(1, len(history) // 4):]

    def avg(rows: list[dict], key: str) -> float | None:
        vals = [h[key] for h in rows if h.get(key) is not None]
        return round(sum(vals) / len(vals), 6) if vals else None

    return trainer.model, {
        "n_examples": len(pairs), "n_examples_truncated": int(truncated),
        "steps": history[-1]["step"] if history else 0,
        "first_loss": avg(first, "loss"), "final_loss": avg(last, "loss"),
        "final_token_accuracy": avg(last, "mean_token_accuracy"),
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
        "train_tokens": int(getattr(trainer, "_total_train_tokens", 0)), "num_processes": trainer.args.world_size,
        "resumed_from_step": int(ckpt.name.rpartition("-")[2]) if ckpt else None,
    }
