"""The params schema: every key of params.yaml, its type, default and meaning, validated before any heavy work.

Top-level keys are the stage names, plus `base` (seed and model shared by all stages) and `paths` (every file the
pipeline reads or writes, referenced from dvc.yaml as `${paths.x}` and handed to the stages as arguments).
Unknown keys are rejected. Training sections (`train_weak.dpo`, `align.dpo`) use TRL's `DPOConfig` field names
verbatim and pass straight into it.

Check a params file by hand: ``python -m weakalign.params params.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SOURCES = ("human", "weak", "gold", "random")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(_Section):
    seed: int = Field(0, description="Seed for every random choice: sampling, annotators, splits, training.")
    model: str = Field(
        "embedded:smollm2",
        description="Starting policy of the target (and, by default, of the weak teacher): `embedded:smollm2`, "
        "`tiny-random`, a local model directory or a Hugging Face Hub id. `base_model` writes it to "
        "`paths.base_model`.",
    )
    trust_remote_code: bool = Field(False, description="Allow models that ship Python code. Off unless you trust it.")


class Paths(_Section):
    """Every path of the pipeline. dvc.yaml refers to these as ${paths.x}; stages get them as arguments."""

    prompts: str = "data/raw/prompts.jsonl"
    prompts_train: str = "data/prompts/train.jsonl"
    prompts_test: str = "data/prompts/test.jsonl"
    base_model: str = "models/base"
    pairs: str = "data/pairs.jsonl"
    annotated: str = "data/annotated.jsonl"
    labeled: str = "data/split/labeled.jsonl"
    unlabeled: str = "data/split/unlabeled.jsonl"
    weak_model: str = "models/weak"
    weak_labels: str = "data/labels/weak.jsonl"
    feedback: str = "data/feedback"
    targets: str = "models/targets"
    generations: str = "data/eval/generations.jsonl"
    report: str = "reports/summary.md"
    metrics: str = "metrics"
    plots: str = "plots"
    dvclive: str = "dvclive"
    checkpoints: str = "checkpoints"  # work folders that let a killed stage resume; not DVC outputs, git-ignored


class Holdout(_Section):
    n_test: int = Field(300, ge=1, description="Prompts held out for evaluation; never seen in training or labeling.")
    n_train: int | None = Field(None, ge=2, description="Training prompts kept (a seeded sample of the rest); null "
                                "keeps all. Each becomes one response pair.")


class Generation(_Section):
    """Sampling settings shared by `generate_pairs` and `evaluate`."""

    max_new_tokens: int = Field(48, ge=1, le=1024, description="New tokens per response.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Sample from the k most likely tokens; 0 disables the cut.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")
    bf16: bool = Field(True, description="Run generation in bfloat16 (fast on CPUs with AMX and on GPUs).")


class GeneratePairs(Generation):
    max_attempts: int = Field(
        3, ge=1, description="Sampling rounds for prompts whose two responses came out empty or identical; pairs "
        "still unusable after that are dropped and counted in metrics/pairs.json.",
    )


class Judge(_Section):
    """The gold judge of the sandbox: VADER sentiment of the response, minus penalties that make it hard to game."""

    name: Literal["vader"] = Field("vader", description="Which gold judge scores responses.")
    repeat_ngram: int = Field(3, ge=2, description="n of the n-grams whose repeats are penalised.")
    repeat_penalty: float = Field(1.0, ge=0, description="Penalty per unit of repeated-n-gram fraction.")
    copy_penalty: float = Field(1.0, ge=0, description="Penalty per unit of the response's n-grams copied from the prompt.")
    min_words: int = Field(4, ge=0, description="Responses with fewer words get `short_score`.")
    short_score: float = Field(-1.0, description="Score of an empty or too-short response.")


class Annotate(_Section):
    tau: float = Field(
        0.35, gt=0,
        description="Bradley-Terry temperature of the simulated human annotators: P(1 > 2) = sigmoid((g1 - g2 + "
        "length_bias * (words1 - words2) / 100) / tau). Smaller tau: less noise.",
    )
    length_bias: float = Field(0.0, description="Extra gold-score units per 100 words of length advantage.")


class Split(_Section):
    n_labeled: int | None = Field(64, ge=1, description="Pairs in D_l, which keeps its human labels and trains the "
                                  "weak teacher. Set it or `labeled_fraction`, not both.")
    labeled_fraction: float | None = Field(
        None, gt=0, lt=1, description="D_l as a share of all pairs, in (0, 1) (the paper's labeled fraction, e.g. "
        "0.125); rounded to whole pairs. Set it or `n_labeled`, not both.",
    )
    n_unlabeled: int | None = Field(
        None, ge=1, description="Pairs in D_u, labeled by the weak teacher; null takes every remaining pair."
    )

    @model_validator(mode="after")
    def _one_size(self) -> Split:
        if (self.n_labeled is None) == (self.labeled_fraction is None):
            raise ValueError("set exactly one of n_labeled and labeled_fraction (the other null)")
        return self

    def labeled_size(self, n_pairs: int) -> int:
        """Pairs in D_l out of `n_pairs`."""
        if self.n_labeled is not None:
            return self.n_labeled
        return max(1, round(self.labeled_fraction * n_pairs))


class DPO(_Section):
    """TRL `DPOConfig` fields, verbatim. Only these are accepted; see TRL's docs for their full meaning."""

    beta: float = Field(0.1, gt=0, description="DPO beta: strength of the KL anchor to the reference.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak AdamW learning rate (TRL's default 1e-6 learns "
                                 "nothing in a few hundred pairs).")
    num_train_epochs: float = Field(2.0, gt=0, description="Passes over the training pairs.")
    max_steps: int = Field(-1, description="If > 0, stop after this many optimizer steps (overrides epochs).")
    per_device_train_batch_size: int = Field(8, ge=1, description="Pairs per device per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int | None = Field(192, ge=8, description="Tokens of prompt + response kept; longer pairs are "
                                   "truncated by TRL and counted in the metrics.")
    lr_scheduler_type: str = Field("linear", description="Transformers scheduler name.")
    warmup_steps: float = Field(0.1, ge=0, description="Warm-up steps, or a fraction of all steps if < 1.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    loss_type: list[str] = Field(["sigmoid"], min_length=1, description="TRL loss types (a list in TRL 1.x).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Robust-DPO flip probability.")
    bf16: bool = Field(True, description="bfloat16 autocast (TRL's default; fast with AMX and on GPUs).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass instead "
                                         "of keeping them: for SmolLM2-135M at batch 8 it cut peak memory from 5.0 "
                                         "to 3.5 GiB for 2-4% more time, with the same losses (docs/PERFORMANCE.md).")
    precompute_ref_log_probs: bool = Field(True, description="Compute the reference log-probs once before "
                                           "training instead of a reference forward every step.")
    logging_steps: float = Field(2, gt=0, description="Log (and write dvclive points) every this many steps.")
    save_strategy: Literal["no", "steps", "epoch"] = Field(
        "steps", description="When to write a resumable checkpoint (weights, optimizer, scheduler, RNG states) to "
        "`${paths.checkpoints}/<stage>`; a killed stage resumes from the newest one when rerun. `no` disables it.")
    save_steps: float = Field(16, gt=0, description="Checkpoint every this many optimizer steps (a fraction of all "
                              "steps if < 1) with `save_strategy: steps`.")
    save_total_limit: int | None = Field(1, ge=1, description="Checkpoints kept on disk; older ones are deleted. "
                                         "One is enough to resume; each holds weights and optimizer state "
                                         "(about 1.6 GB for a 135M model).")

    @model_validator(mode="after")
    def _loss(self) -> DPO:
        known = {"sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                 "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"}
        bad = [x for x in self.loss_type if x not in known]
        if bad:
            raise ValueError(f"loss_type: unknown {bad}; TRL knows {sorted(known)}")
        return self


class TrainWeak(_Section):
    model: str = Field("base", description="The weak LLM: `base` (the output of `base_model`) or any model reference "
                       "(see `base.model`). Its starting point is also the reference of its implicit reward.")
    dpo: DPO = DPO()

    def model_ref(self, base_dir: str) -> str:
        """The weak LLM's starting point (also its implicit reward's reference): `base` means `base_dir`."""
        return base_dir if self.model == "base" else self.model


class LabelWeak(_Section):
    batch_size: int = Field(32, ge=1, description="Pairs per forward pass.")


class Align(_Section):
    sources: list[Literal["human", "weak", "gold", "random"]] = Field(
        ["human", "weak"], min_length=1,
        description="Feedback sources to align a target on: `human`, `weak`, and the bounds `gold` (the gold "
        "judge's own labels, an upper bound) and `random` (coin flips, a lower bound).",
    )
    dpo: DPO = DPO()

    @model_validator(mode="after")
    def _unique(self) -> Align:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: duplicates in {self.sources}")
        return self


class Compare(_Section):
    margin_bins: int = Field(5, ge=1, le=50, description="Quantile bins of |weak margin| for agreement-by-margin.")


class Evaluate(Generation):
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")


class Report(_Section):
    n_examples: int = Field(5, ge=0, description="Most confident weak-vs-human disagreements shown in the report.")


class Params(_Section):
    base: Base = Base()
    paths: Paths = Paths()
    holdout: Holdout = Holdout()
    generate_pairs: GeneratePairs = GeneratePairs()
    judge: Judge = Judge()
    annotate: Annotate = Annotate()
    split: Split = Split()
    train_weak: TrainWeak = TrainWeak()
    label_weak: LabelWeak = LabelWeak()
    compare: Compare = Compare()
    align: Align = Align()
    evaluate: Evaluate = Evaluate()
    report: Report = Report()


class ParamsError(ValueError):
    """A bad params file; the message names the key."""


def parse_params(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {key}: {msg}" + ("" if err["type"] == "extra_forbidden" else f" (got {err['input']!r})"))
        raise ParamsError(f"{source}: invalid params\n" + "\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({e})") from None
    return parse_params(raw, str(path))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "params.yaml"
    try:
        load_params(path)
    except ParamsError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
