"""Supervised fine-tuning on the human-chosen responses of D_l, with TRL's `SFTTrainer` (stage `sft`).

DPO recipes for base models fine-tune on preferred responses first, so that the policy (and the DPO reference,
which is the starting point) puts real mass on answers of the right kind. The examples are conversational
prompt-completion rows (the chat template, or the plain HH format, as everywhere else), so with TRL's default
the loss covers the response tokens only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from weakalign.config.params import Lora, SFTFields
from weakalign.modeling.generation import chat_prompt
from weakalign.training.harness import fit, tail_mean

log = logging.getLogger(__name__)


def sft_dataset(pairs: list[tuple[str, str]]) -> Dataset:
    """(prompt, chosen response) texts -> TRL's conversational prompt-completion format."""
    return Dataset.from_list([{"prompt": chat_prompt(p), "completion": [{"role": "assistant", "content": c}]}
                              for p, c in pairs])


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], cfg: SFTFields,
          seed: int, live_dir: str | Path, work_dir: str | Path, model_id: str,
          lora: Lora | None = None) -> tuple[PreTrainedModel, dict]:
    """Fine-tune `model` (in place) on (prompt, chosen) pairs; return it and a summary for the metrics.

    Checkpoints, resume and dvclive curves come from the shared harness (harness.fit); under `lora.use_peft` a
    PEFT model is returned.
    """
    truncated = [0]

    def check(trainer):
        if cfg.max_length:
            truncated[0] = sum(len(ids) > cfg.max_length for ids in trainer.train_dataset["input_ids"])
        if truncated[0]:
            log.warning("sft.sft.max_length %s truncates %d of %d examples", cfg.max_length, truncated[0], len(pairs))

    run = fit(SFTTrainer, "sft", cfg, SFTConfig, seed, pairs, model_id, work_dir, live_dir, model=model, lora=lora,
              check=check, train_dataset=sft_dataset(pairs), processing_class=tok)
    return run.trainer.model, {
        "n_examples": len(pairs), "n_examples_truncated": int(truncated[0]), "steps": run.steps,
        "first_loss": tail_mean(run.history, "loss", head=True), "final_loss": tail_mean(run.history, "loss"),
        "final_token_accuracy": tail_mean(run.history, "mean_token_accuracy"),
        "train_seconds": round(run.metrics.get("train_runtime", 0.0), 2), **run.common(),
    }
