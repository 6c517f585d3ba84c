"""The training harness that DPO, SFT and the reward model share: one place for what every TRL trainer run here does.

    run = fit(SFTTrainer, "sft", cfg, seed, examples, model_id, work_dir, live_dir, model=..., train_dataset=...)

- a fingerprinted work folder (`resume.prepare`): a killed stage resumes from its newest checkpoint only if the
  inputs are the same, and the dvclive curves are replayed up to it;
- TRL's own config class built from the params section (`trainer_kwargs`): the keys params set, verbatim, plus
  what the pipeline fixes for every trainer (seeds, no hub, dvclive, bf16 only where the hardware has it);
- LoRA through TRL's `peft_config`, with the target modules checked first;
- TRL's fused LM head scoring only the response positions on CPU too (`score_completions_only`, opt-in per call,
  undone by `plain_trl()`);
- the training curves in dvclive, and the summary every metrics file carries (`tail_mean`, `Run.common`).

What differs between the three objectives (the dataset, the checks on it, the summary's own keys) stays in
dpo.py, sft.py and reward_model.py.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerCallback

from weakalign.config.trl_config import TRLSection
from weakalign.modeling.models import bf16_usable, check_lora_targets, known_deprecations, lora_config
from weakalign.records import resume

log = logging.getLogger(__name__)


# TRL's fused LM head scores every position off Triton devices; `score_completions_only` (called by `fit` for every
# trainer, and by rewards.implicit_rewards) makes it score the response positions only on CPU.
_TRL_USE_TRITON: list = []  # TRL's own function, kept once it is replaced
_PLAIN = [False]


@contextlib.contextmanager
def plain_trl():
    """TRL exactly as shipped, without our CPU scoring patch: the baseline in benchmarks/."""
    import trl.trainer.utils as trl_utils

    patched = getattr(trl_utils, "_use_triton", None)
    if _TRL_USE_TRITON:
        trl_utils._use_triton = _TRL_USE_TRITON[0]
    _PLAIN[0] = True
    try:
        yield
    finally:
        _PLAIN[0] = False
        trl_utils._use_triton = patched


def score_completions_only() -> None:
    """Make TRL's fused LM head project only the response positions on CPU too, as it does on CUDA.

    TRL 1.16 scores every position (prompt and padding included) off Triton devices, so that Neuron compiles one
    tile shape; the masked positions are zeroed afterwards. Scoring only the labeled positions gives the same
    log-probs (tests/test_rewards.py) and makes a CPU DPO step about 25% faster (1.48 -> 1.12 s per pair here).
    It replaces `trl.trainer.utils._use_triton`, which TRL consults only for that choice;
    tests/test_dpo.py::test_the_cpu_scoring_patch_still_fits_trl fails if TRL changes that function or its use.
    Not on CUDA (TRL already does this there) and not inside `plain_trl()`.
    """
    import trl.trainer.utils as trl_utils

    if _PLAIN[0] or torch.cuda.is_available() or not hasattr(trl_utils, "_use_triton"):
        return
    if not _TRL_USE_TRITON:
        _TRL_USE_TRITON.append(trl_utils._use_triton)
        trl_utils._use_triton = _score_compact


def _score_compact(device) -> bool:
    return True  # TRL's `compact`: score hidden_states[mask] only


def trainer_kwargs(cfg: TRLSection, seed: int, output_dir: str) -> dict:
    """The keys params set in a TRL section (DPO, Reward or SFT), verbatim, plus what the pipeline fixes for every TRL
    trainer: seeds, no hub, no TRL-side reporting (dvclive gets the curves), bf16 only where it works."""
    if cfg.fp16 and not torch.cuda.is_available():
        log.warning("fp16 needs a CUDA GPU: training in fp32 on this machine")
    # bf16 unset is TRL's "on unless fp16"; on where the hardware has it natively, else fp32 (models.bf16_usable).
    bf16 = cfg.bf16 if cfg.bf16 is not None else not cfg.fp16
    return dict(cfg.values(), output_dir=output_dir, seed=seed, data_seed=seed, report_to=[],
                use_cpu=not torch.cuda.is_available(), bf16=bf16_usable(bf16),
                fp16=cfg.fp16 and torch.cuda.is_available(), dataloader_num_workers=0,
                disable_tqdm=False, logging_first_step=True)


def dvclive_curves(live_dir: str | Path):
    """The transformers callback that writes the training curves to dvclive at `live_dir`; under `accelerate
    launch` only the first process gets a dvclive run (the callback logs on that process alone)."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    class StepCurves(DVCLiveCallback):
        """dvclive's own callback, with each point at the optimizer step it was logged at: dvclive's step counts
        log calls, so logging every 2 steps would put step 16's loss at step 8. `step` is for resume.replay."""

        def on_log(self, args, state, control, model=None, logs=None, step=None, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step if step is None else step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) if resume.is_main_process() else None
    return StepCurves(live=live)


def _quiet_progress(trainer) -> None:
    """Keep transformers' progress bar but not the dict of every logged point it writes under it (up to 500
    characters a line, 12 or more a stage): the same numbers go to the dvclive curves and the metrics file."""
    from transformers.trainer_callback import ProgressCallback

    class Progress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    if any(type(cb) is ProgressCallback for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(Progress())


class _Checkpoints(TrainerCallback):
    """Skip the trainer's extra save after the last step (the weights are written as the stage's output a moment
    later; about 3 s and 1.6 GB for a 135M model), and give the fault injection its hook once a save is whole."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        resume.crash_point()  # the checkpoint is complete on disk here


def _train(trainer, ckpt: Path | None):
    """trainer.train, resuming from `ckpt`. A checkpoint that cannot be loaded (its weights or optimizer state cut
    short or corrupted) is deleted and the stage stops in one line: the rerun resumes from the one before, or
    starts over. Left in place, every rerun would fail on it again."""
    if ckpt is None:
        return trainer.train()
    from safetensors import SafetensorError

    step = int(ckpt.name.rpartition("-")[2])
    try:
        return trainer.train(resume_from_checkpoint=str(ckpt))
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, SafetensorError) as e:
        if trainer.state.global_step > step:  # it resumed and failed later: not the checkpoint's fault
            raise
        shutil.rmtree(ckpt, ignore_errors=True)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"checkpoint {ckpt} could not be resumed ({type(e).__name__}: {first}); deleted it: run "
                         "the stage again (`dvc repro`) to resume from the one before, or start over") from None


@dataclass
class Run:
    trainer: Any
    history: list[dict]  # the trainer's logged training points (restored from the checkpoint on resume)
    metrics: dict  # trainer.train()'s own metrics (train_runtime ...)
    resumed_from_step: int | None

    def common(self) -> dict:
        """The keys every training summary ends with."""
        return {"train_tokens": int(getattr(self.trainer, "_total_train_tokens", 0)),
                "num_processes": self.trainer.args.world_size, "resumed_from_step": self.resumed_from_step}

    @property
    def steps(self) -> int:
        """Optimizer steps taken (the last logged point may be earlier, when logging_steps does not divide them)."""
        return self.trainer.state.global_step


def tail_mean(history: list[dict], key: str, head: bool = False) -> float | None:
    """Mean of `key` over the last (or, with head, the first) quarter of the logged points, rounded to 6 places."""
    n = max(1, len(history) // 4)
    vals = [h[key] for h in (history[:n] if head else history[-n:]) if h.get(key) is not None]
    return round(sum(vals) / len(vals), 6) if vals else None


def fit(trainer_cls, kind: str, cfg: TRLSection, config_cls, seed: int, examples: list, model_id: str,
        work_dir: str | Path, live_dir: str | Path, model: PreTrainedModel, lora=None, task: str = "CAUSAL_LM",
        prepare=None, check=None, **trainer_args) -> Run:
    """Train `model` with TRL's `trainer_cls` (in place) on `examples`, resumably; return the finished run.

    `kind` and `examples` (with the params, seed, `model_id` naming the starting weights, and LoRA) fingerprint the
    work folder: a checkpoint there is resumed only if they are the same. `prepare(work)`, if given, returns the
    train dataset (it may need the work folder); `check(trainer)` runs before training, on the trainer's own
    tokenized dataset. `trainer_args` go to `trainer_cls` as they are.
    """
    score_completions_only()
    torch.manual_seed(seed)
    check_lora_targets(model, lora)
    peft = lora_config(lora, task) if lora is not None else None
    work = resume.prepare(work_dir, resume.fingerprint(kind, cfg.model_dump(), seed, examples, model_id,
                                                       *([lora.model_dump()] if peft else [])))
    ckpt = resume.last_checkpoint(work)
    curves = dvclive_curves(live_dir)
    if prepare is not None:
        trainer_args["train_dataset"] = prepare(work)
    with known_deprecations():
        trainer = trainer_cls(model=model, args=config_cls(**trainer_kwargs(cfg, seed, str(work))),
                              callbacks=[curves, _Checkpoints()], peft_config=peft, **trainer_args)
        _quiet_progress(trainer)
        if check is not None:
            check(trainer)
        if ckpt is not None:
            log.info("resuming from %s", ckpt)
            resume.replay(trainer, curves, ckpt)  # dvclive curves and TRL's token count up to the checkpoint
        result = _train(trainer, ckpt)
    if trainer.state.global_step == 0:  # e.g. a batch larger than the data with dataloader_drop_last: all dropped
        a = trainer.args
        raise ValueError(f"{kind}: trained 0 optimizer steps on {len(examples)} examples (batch size "
                         f"{a.per_device_train_batch_size} x {a.world_size} processes, dataloader_drop_last "
                         f"{a.dataloader_drop_last}): lower the batch size; nothing written")
    return Run(trainer, [h for h in trainer.state.log_history if "loss" in h], result.metrics,
               int(ckpt.name.rpartition("-")[2]) if ckpt else None)
