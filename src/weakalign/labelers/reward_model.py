"""The `rm` labeler: a Bradley-Terry reward model trained on D_l with TRL's `RewardTrainer`, labeling D_u by its
scores.

It starts from the weak teacher's own starting point (`train_weak.model`) with a fresh one-output score head, and
trains on the same human-labeled pairs, so it differs from the weak teacher only in the objective: an explicit
reward r(x, y) instead of DPO's implicit one. Pairs are formatted through the chat template as everywhere else;
training and scoring tokenize alike (tests/test_reward_model.py), scoring pads right with a dedicated pad token
(models.reward_model_from_lm) and is done by the same scorer as the reward-model gold judge.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from weakalign.config.params import Lora, Reward
from weakalign.labelers.judge import RewardModelJudge
from weakalign.modeling.models import known_deprecations
from weakalign.training.dpo import preference_dataset
from weakalign.training.harness import fit, tail_mean, trainer_kwargs

log = logging.getLogger(__name__)


def reward_config(cfg: Reward, seed: int, output_dir: str) -> RewardConfig:
    with known_deprecations():
        return RewardConfig(**trainer_kwargs(cfg, seed, output_dir))


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, triples: list[tuple[str, str, str]], cfg: Reward,
          seed: int, live_dir: str | Path, work_dir: str | Path, model_id: str,
          lora: Lora | None = None) -> tuple[PreTrainedModel, dict]:
    """Train the reward model (in place) on (prompt, chosen, rejected) triples; return it and a metrics summary.

    Checkpoints go to `work_dir` and a killed run resumes from the newest one (harness.fit). With
    `lora.use_peft` only LoRA adapters and the score head train (a PEFT model is returned; it scores as is)."""
    dropped = [0]

    def check(trainer):
        dropped[0] = len(triples) - len(trainer.train_dataset)  # RewardTrainer drops pairs over max_length
        if dropped[0]:
            log.warning("max_length %s: %d of %d training pairs dropped", cfg.max_length, dropped[0], len(triples))
        if not len(trainer.train_dataset):
            raise ValueError(f"label_rm.reward.max_length={cfg.max_length} drops every training pair; raise it")

    run = fit(RewardTrainer, "rm", cfg, RewardConfig, seed, triples, model_id, work_dir, live_dir, model=model,
              lora=lora, task="SEQ_CLS", check=check, train_dataset=preference_dataset(triples), processing_class=tok)
    final_loss = tail_mean(run.history, "loss")
    # Learned = the Bradley-Terry loss ended clearly below ln 2 (a constant reward), as for DPO (dpo.summarize).
    learned = final_loss is not None and final_loss < math.log(2) - 0.01
    if not learned:
        log.warning("reward model did not learn: final loss %s (ln 2 = 0.693)", final_loss)
    return run.trainer.model, {
        "n_train_pairs": len(triples), "n_train_pairs_dropped_too_long": dropped[0], "steps": run.steps,
        "final_loss": final_loss, "final_accuracy": tail_mean(run.history, "accuracy"),
        "final_margin": tail_mean(run.history, "margin"), "learned": learned,
        "train_seconds": round(run.metrics.get("train_runtime", 0.0), 2), **run.common(),
    }


def score_pairs(model: PreTrainedModel, tok: PreTrainedTokenizerBase, triples: list[tuple[str, str, str]],
                batch_size: int, max_length: int | None) -> tuple[list[float], list[float], int]:
    """Reward of both responses of each (prompt, response_1, response_2); and the tokens scored (the cost)."""
    scorer = RewardModelJudge(model, tok, batch_size, max_length, "rm")
    prompts = [p for p, _, _ in triples] * 2
    responses = [a for _, a, _ in triples] + [b for _, _, b in triples]
    scores = scorer.score(prompts, responses)  # fp32: 2 x 112 short texts take seconds
    n = len(triples)
    return scores[:n], scores[n:], scorer.n_tokens
