"""DPO training with TRL's `DPOTrainer`: the weak teacher on D_l, and each target on D_u.

The conversational format is used throughout (a user turn, an assistant turn), so training, labeling and
sampling all go through the same chat template.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer

from weakalign.config.params import DPO, Lora
from weakalign.modeling.generation import chat_prompt
from weakalign.modeling.models import known_deprecations, lora_config
from weakalign.records import resume
from weakalign.records.schema import Pair
from weakalign.training.harness import fit, score_completions_only, tail_mean, trainer_kwargs

log = logging.getLogger(__name__)


# Thresholds of the `learned` flag: the trained policy's DPO loss on its own training pairs must be this far below
# ln 2 (the loss of the start, where policy = reference) and its mean reward margin above this.
_STUCK_LOSS = 0.01
_STUCK_MARGIN = 0.05


def preference_dataset(triples: list[tuple[str, str, str]],
                       ref_logps: list[tuple[float, float]] | None = None) -> Dataset:
    """(prompt, chosen, rejected) texts -> TRL's conversational preference format; with `ref_logps`, each row also
    carries the reference's (log p(chosen), log p(rejected)) in TRL's own column names."""
    rows = [{"prompt": chat_prompt(p), "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in triples]
    for row, (chosen, rejected) in zip(rows, ref_logps or [], strict=ref_logps is not None):
        row |= {"ref_chosen_logps": chosen, "ref_rejected_logps": rejected}
    return Dataset.from_list(rows)


class SharedReferenceDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer, except that a train dataset which already carries the reference log-probs is used as it
    is instead of being scored again. The `reference` stage scores D_u once per seed for every feedback source:
    the sources share the pairs, the start model and the batches, and differ only in which response is chosen."""

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)


def reference_logps(model: PreTrainedModel, tok: PreTrainedTokenizerBase, triples: list[tuple[str, str, str]],
                    dpo: DPO, seed: int, lora: Lora | None = None) -> list[tuple[float, float]]:
    """The reference's log-probs of both responses of each (prompt, y_1, y_2), exactly as TRL's DPOTrainer
    precomputes them before training with these settings (its tokenization, collator, batches and autocast):
    the trainer is built as `train` builds it, which scores the dataset, and its columns are read back."""
    _check_room(tok, triples, dpo.max_length)
    score_completions_only()
    torch.manual_seed(seed)
    peft = lora_config(lora, "CAUSAL_LM") if lora is not None and lora.use_peft else None
    with tempfile.TemporaryDirectory(prefix="weakalign-reference-") as tmp:
        with known_deprecations():
            args = DPOConfig(**{**trainer_kwargs(dpo, seed, tmp), "precompute_ref_log_probs": True})
            trainer = DPOTrainer(model=model, args=args, train_dataset=preference_dataset(triples),
                                 processing_class=tok, peft_config=peft)
        ds = trainer.train_dataset
        if len(ds) != len(triples):
            raise ValueError(f"{len(triples) - len(ds)} pairs have a prompt longer than align.dpo.max_length="
                             f"{dpo.max_length}")
        return list(zip(ds["ref_chosen_logps"], ds["ref_rejected_logps"], strict=True))


def _check_room(tok: PreTrainedTokenizerBase, triples: list[tuple[str, str, str]], max_length: int | None) -> None:
    """TRL drops a pair whose prompt alone fills max_length; if it drops them all it fails deep inside with an
    empty torch.cat. Say so first, naming the key."""
    if max_length is None or not triples:
        return
    shortest = min(len(tok.apply_chat_template(chat_prompt(p), add_generation_prompt=True, tokenize=True,
                                               return_dict=False)) for p, _, _ in triples)
    if shortest >= max_length:
        raise ValueError(f"dpo.max_length {max_length}: the prompt alone fills it in every one of the "
                         f"{len(triples)} pairs (the shortest prompt has {shortest} tokens), so nothing is left to "
                         "train on; raise it")


def triples(pairs: list[Pair], choice: dict[str, int]) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) for each pair that has a choice (1 or 2, by pair id)."""
    out = []
    for p in pairs:
        if p.id in choice:
            c = choice[p.id]
            out.append((p.prompt, p.response_1 if c == 1 else p.response_2, p.response_2 if c == 1 else p.response_1))
    return out


def dpo_config(dpo: DPO, seed: int, output_dir: str, **overrides) -> DPOConfig:
    with known_deprecations():
        return DPOConfig(**{**trainer_kwargs(dpo, seed, output_dir), **overrides})


def truncation_counts(trainer: DPOTrainer, n_in: int, max_length: int | None) -> dict:
    """Pairs that TRL dropped (prompt alone fills max_length) or will truncate, from its own tokenization."""
    ds = trainer.train_dataset
    truncated = 0
    if max_length is not None:
        for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True):
            truncated += len(p) + max(len(c), len(r)) > max_length
    return {"n_train_pairs": n_in, "n_train_pairs_dropped_too_long": n_in - len(ds),
            "n_train_pairs_truncated": int(truncated)}


def _shared(ds: Dataset, work: Path) -> Dataset:
    """Under `accelerate launch`, the dataset saved in the stage's work folder and read back from there.

    TRL's precomputed reference log-probs are written by the first process to a cache file beside the dataset's
    files and read by every process. An in-memory dataset has no files, so each process would look in its own
    temporary folder for a file that only the first one wrote (FileNotFoundError). One process: unchanged.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return ds
    from datasets import load_from_disk

    path = Path(work) / "dataset"
    with resume.main_process_first():
        if resume.is_main_process() and not path.exists():
            ds.save_to_disk(str(path))
    return load_from_disk(str(path))


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, triples: list[tuple[str, str, str]], dpo: DPO,
          seed: int, live_dir: str | Path, work_dir: str | Path, model_id: str,
          lora: Lora | None = None, ref_logps: list[tuple[float, float]] | None = None) -> tuple[PreTrainedModel, dict]:
    """DPO-train `model` (in place) on the triples; return it and a summary for the metrics.

    The reference is the model as it is before training: with `precompute_ref_log_probs` TRL scores every pair
    with it once up front; otherwise it gets an untouched copy. With `lora.use_peft`, TRL wraps the model in LoRA
    adapters and the reference is the same model with the adapter switched off (no copy); the returned model is
    then a PEFT model, which `saved_models.save_model` writes as an adapter. `ref_logps` (the reference's log-probs of
    each triple's chosen and rejected response, from `reference_logps`) are used instead of TRL's precomputation,
    where `precompute_ref_log_probs` is on; they are ignored otherwise. Checkpoints go to `work_dir`; if it holds one
    from a killed run of the same inputs (`model_id` identifies the starting weights), training resumes from
    it and the dvclive curves are replayed from its log history. The caller deletes `work_dir` when done.
    """
    _check_room(tok, triples, dpo.max_length)
    ref = None
    if not (lora is not None and lora.use_peft) and not dpo.precompute_ref_log_probs:
        import copy

        ref = copy.deepcopy(model).eval()
    counts: dict = {}

    def check(trainer):
        counts.update(truncation_counts(trainer, len(triples), dpo.max_length))
        if counts["n_train_pairs_dropped_too_long"] or counts["n_train_pairs_truncated"]:
            log.warning("max_length %s: %d pairs dropped, %d truncated", dpo.max_length,
                        counts["n_train_pairs_dropped_too_long"], counts["n_train_pairs_truncated"])

    shared = ref_logps if dpo.precompute_ref_log_probs else None
    run = fit(SharedReferenceDPOTrainer, "dpo", dpo, DPOConfig, seed, triples, model_id, work_dir, live_dir,
              model=model, lora=lora, prepare=lambda work: _shared(preference_dataset(triples, shared), work),
              check=check, ref_model=ref, processing_class=tok)
    summary = summarize(run.history, run.metrics, counts, fit_on_own_pairs(run.trainer)) | {"steps": run.steps}
    return run.trainer.model, {**summary, "num_processes": run.trainer.args.world_size,
                               "resumed_from_step": run.resumed_from_step}


def _step_weighted_mean_loss(history: list[dict]) -> float | None:
    """Mean loss per optimizer step over the logged steps: each logged loss averages the steps since the last log."""
    total, prev = 0.0, 0
    for h in history:
        total += h["loss"] * (h["step"] - prev)
        prev = h["step"]
    return round(total / prev, 6) if prev else None


def fit_on_own_pairs(trainer: DPOTrainer) -> dict:
    """The trained policy scored once on its own training pairs (eval mode: no dropout), by TRL's own evaluation
    loop and loss: `fit_loss`, `fit_accuracy` (share of pairs whose chosen response gets the higher implicit reward)
    and `fit_margin` (mean reward margin).

    This, not the logged training loss, says whether a run learned its labels. In one epoch every logged batch is
    one the policy has not seen yet, so the training curve measures how well it predicts *new* pairs of the same
    source: near ln 2 for noisy labels even when the policy moved toward them (a human-label target whose gold
    reward beat the random floor by 3 standard errors logged a final loss of 0.707). The start scores exactly ln 2
    here (policy = reference), so a stuck run (a learning rate too low, frozen weights) stays at ln 2.
    """
    from transformers import Trainer
    from transformers.integrations import DVCLiveCallback

    trainer.remove_callback(DVCLiveCallback)  # the curves are training's; this is one summary point, not a step
    # Trainer.evaluate itself: DPOTrainer.evaluate would re-tokenize and refuses a full fine-tune without a kept
    # reference, though the training dataset already carries the reference's log-probs.
    with known_deprecations():
        m = Trainer.evaluate(trainer, eval_dataset=trainer.train_dataset, metric_key_prefix="fit")
    return {"fit_loss": round(m["fit_loss"], 6), "fit_accuracy": round(m["eval_rewards/accuracies"], 6),
            "fit_margin": round(m["eval_rewards/margins"], 6)}


def summarize(history: list[dict], run_metrics: dict, counts: dict, fit: dict) -> dict:
    """What the metrics file records of a run, including whether it learned anything.

    `history` is the trainer's log history (restored from the checkpoint on resume, so it covers the whole run);
    the trainer's own mean loss would only cover the steps since the resume. `fit` is `fit_on_own_pairs`.
    """
    # Learned = on its own training pairs, the trained policy's loss is clearly below ln 2 with a positive reward
    # margin. A loss stuck at ln 2 with zero margins (nothing moved) or above it with negative margins (worse than
    # a coin on the very pairs it trained on) is flagged, not hidden.
    learned = fit["fit_loss"] < math.log(2) - _STUCK_LOSS and fit["fit_margin"] > _STUCK_MARGIN
    if not learned:
        log.warning("training did not learn: on its own %d training pairs the trained policy's loss is %s "
                    "(ln 2 = 0.693), reward margin %s", counts.get("n_train_pairs", 0), fit["fit_loss"],
                    fit["fit_margin"])
    return {
        **counts,
        "steps": history[-1]["step"] if history else 0,
        "train_loss_mean": _step_weighted_mean_loss(history),
        "final_loss": tail_mean(history, "loss"),
        "final_margin": tail_mean(history, "rewards/margins"),
        "final_accuracy": tail_mean(history, "rewards/accuracies"),
        **fit,
        "learned": learned,
        "train_seconds": round(run_metrics.get("train_runtime", 0.0), 2),
    }
