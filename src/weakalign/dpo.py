"""DPO training with TRL's `DPOTrainer`: the weak teacher on D_l, and each target on D_u.

The conversational format is used throughout (a user turn, an assistant turn), so training, labeling and
sampling all go through the same chat template.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import DPOConfig, DPOTrainer

from . import resume
from .generation import chat_prompt
from .models import bf16_usable, check_lora_targets, lora_config
from .params import DPO, Lora
from .schema import Pair

log = logging.getLogger(__name__)


@contextlib.contextmanager
def plain_trl():
    """TRL exactly as shipped, without our CPU scoring patch: the baseline in benchmarks/."""
    import trl.trainer.utils as trl_utils

    patched = getattr(trl_utils, "_use_triton", None)
    trl_utils._use_triton = _TRL_USE_TRITON
    try:
        yield
    finally:
        trl_utils._use_triton = patched


def _score_completions_only() -> None:
    """Make TRL's fused LM head project only the response positions on CPU too, as it does on CUDA.

    TRL 1.16 scores every position (prompt and padding included) off Triton devices, so that Neuron compiles one
    tile shape; the masked positions are zeroed afterwards. Scoring only the labeled positions gives the same
    log-probs (tests/test_rewards.py) and makes a CPU DPO step about 25% faster (1.48 -> 1.12 s per pair here).
    """
    import trl.trainer.utils as trl_utils

    global _TRL_USE_TRITON
    _TRL_USE_TRITON = getattr(trl_utils, "_use_triton", None)
    if hasattr(trl_utils, "_use_triton") and not torch.cuda.is_available():
        trl_utils._use_triton = lambda device: True  # only consulted for `compact` in trl.trainer.utils


_TRL_USE_TRITON = None
_score_completions_only()

# Thresholds of the `learned` flag: the final loss must be this far below ln 2 and the reward margin above this.
_STUCK_LOSS = 0.01
_STUCK_MARGIN = 0.05


def preference_dataset(triples: list[tuple[str, str, str]]) -> Dataset:
    """(prompt, chosen, rejected) texts -> TRL's conversational preference format."""
    return Dataset.from_list([
        {"prompt": chat_prompt(p), "chosen": [{"role": "assistant", "content": c}],
         "rejected": [{"role": "assistant", "content": r}]}
        for p, c, r in triples
    ])


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


def trainer_kwargs(cfg, seed: int, output_dir: str) -> dict:
    """Our validated training params (DPO, Reward or SFT), verbatim, plus what the pipeline fixes for every TRL
    trainer: seeds, no hub, no TRL-side reporting (dvclive gets the curves), bf16 only where it works."""
    if cfg.fp16 and not torch.cuda.is_available():
        log.warning("fp16 needs a CUDA GPU: training in fp32 on this machine")
    return dict(cfg.model_dump(), output_dir=output_dir, seed=seed, data_seed=seed, report_to=[],
                use_cpu=not torch.cuda.is_available(), bf16=bf16_usable(cfg.bf16),
                fp16=cfg.fp16 and torch.cuda.is_available(), dataloader_num_workers=0,
                disable_tqdm=False, logging_first_step=True)


def dpo_config(dpo: DPO, seed: int, output_dir: str, **overrides) -> DPOConfig:
    return DPOConfig(**{**trainer_kwargs(dpo, seed, output_dir), **overrides})


def truncation_counts(trainer: DPOTrainer, n_in: int, max_length: int | None) -> dict:
    """Pairs that TRL dropped (prompt alone fills max_length) or will truncate, from its own tokenization."""
    ds = trainer.train_dataset
    truncated = 0
    if max_length is not None:
        for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True):
            truncated += len(p) + max(len(c), len(r)) > max_length
    return {"n_pairs_in": n_in, "n_pairs_dropped_too_long": n_in - len(ds), "n_pairs_truncated": int(truncated)}


def dvclive_curves(live_dir: str | Path):
    """The transformers callback that writes the training curves to dvclive at `live_dir`; under `accelerate
    launch` only the first process gets a dvclive run (the callback logs on that process alone)."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) if resume.is_main_process() else None
    return DVCLiveCallback(live=live)


class _Checkpoints(TrainerCallback):
    """Skip the trainer's extra save after the last step (the weights are written as the stage's output a moment
    later; about 3 s and 1.6 GB for a 135M model), and give the fault injection its hook once a save is whole."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        resume.crash_point()  # the checkpoint is complete on disk here


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
          lora: Lora | None = None) -> tuple[PreTrainedModel, dict]:
    """DPO-train `model` (in place) on the triples; return it and a summary for the metrics.

    The reference is the model as it is before training: with `precompute_ref_log_probs` TRL scores every pair
    with it once up front; otherwise it gets an untouched copy. With `lora.use_peft`, TRL wraps the model in LoRA
    adapters and the reference is the same model with the adapter switched off (no copy); the returned model is
    then a PEFT model, which `models.save_model` writes as an adapter. Checkpoints go to `work_dir`; if it holds one
    from a killed run of the same inputs (`model_id` identifies the starting weights), training resumes from
    it and the dvclive curves are replayed from its log history. The caller deletes `work_dir` when done.
    """
    torch.manual_seed(seed)
    check_lora_targets(model, lora)
    _check_room(tok, triples, dpo.max_length)
    peft = lora_config(lora, "CAUSAL_LM") if lora is not None else None
    work = resume.prepare(work_dir, resume.fingerprint("dpo", dpo.model_dump(), seed, triples, model_id,
                                                       *([lora.model_dump()] if peft else [])))
    ckpt = resume.last_checkpoint(work)
    args = dpo_config(dpo, seed, str(work))
    ref = None
    if peft is None and not dpo.precompute_ref_log_probs:
        import copy

        ref = copy.deepcopy(model).eval()
    curves = dvclive_curves(live_dir)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=_shared(preference_dataset(triples), work),
                         processing_class=tok, callbacks=[curves, _Checkpoints()], peft_config=peft)
    counts = truncation_counts(trainer, len(triples), dpo.max_length)
    if counts["n_pairs_dropped_too_long"] or counts["n_pairs_truncated"]:
        log.warning("max_length %s: %d pairs dropped, %d truncated", dpo.max_length,
                    counts["n_pairs_dropped_too_long"], counts["n_pairs_truncated"])
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
        resume.replay(trainer, curves, ckpt)  # dvclive curves and TRL's token count up to the checkpoint
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    history = [h for h in trainer.state.log_history if "loss" in h]
    summary = summarize(history, result.metrics, counts)
    return trainer.model, {**summary, "num_processes": args.world_size,
                           "resumed_from_step": int(ckpt.name.rpartition("-")[2]) if ckpt else None}


def _step_weighted_mean_loss(history: list[dict]) -> float | None:
    """Mean loss per optimizer step over the logged steps: each logged loss averages the steps since the last log."""
    total, prev = 0.0, 0
    for h in history:
        total += h["loss"] * (h["step"] - prev)
        prev = h["step"]
    return round(total / prev, 6) if prev else None


def summarize(history: list[dict], run_metrics: dict, counts: dict) -> dict:
    """What the metrics file records of a run, including whether it learned anything.

    `history` is the trainer's log history (restored from the checkpoint on resume, so it covers the whole run);
    the trainer's own mean loss would only cover the steps since the resume.
    """
    last = history[-max(1, len(history) // 4):]  # the last quarter of the logged points

    def avg(key: str) -> float | None:
        vals = [h[key] for h in last if key in h and h[key] is not None]
        return round(sum(vals) / len(vals), 6) if vals else None

    final_loss, final_margin = avg("loss"), avg("rewards/margins")
    # Learned = the loss ended clearly below ln 2 with a positive reward margin. A loss stuck at ln 2 with zero
    # margins (nothing moved) or above it with negative margins (worse than a coin) is flagged, not hidden.
    learned = (final_loss is not None and final_loss < math.log(2) - _STUCK_LOSS
               and (final_margin or 0.0) > _STUCK_MARGIN)
    if not learned:
        log.warning("training did not learn: final loss %s (ln 2 = 0.693), reward margin %s", final_loss, final_margin)
    return {
        **counts,
        "steps": history[-1]["step"] if history else 0,
        "train_loss_mean": _step_weighted_mean_loss(history),
        "final_loss": final_loss,
        "final_reward_margin": final_margin,
        "final_reward_accuracy": avg("rewards/accuracies"),
        "learned": learned,
        "train_runtime_s": round(run_metrics.get("train_runtime", 0.0), 2),
    }
