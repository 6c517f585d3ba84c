"""The params schema: every key of params.yaml, its type, default and meaning, validated before any heavy work.

Top-level keys are the stage names, plus `base` (seed and model shared by all stages) and `paths` (every file the
pipeline reads or writes, referenced from dvc.yaml as `${paths.x}` and handed to the stages as arguments).
Unknown keys are rejected. Training sections (`train_weak.dpo`, `align.dpo`, `label_rm.reward`, `sft.sft`, every
`lora`) are TRL's own config classes, read from TRL's source (weakalign.trl_config): any field of `DPOConfig`,
`RewardConfig`, `SFTConfig` or `ModelConfig`'s LoRA fields, with TRL's defaults, passed straight into TRL.

Check a params file by hand: ``python -m weakalign.params params.yaml``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from . import feedback
from .refs import check_local_dir, check_offline_cache, parse_layers
from .trl_config import LORA_FIELDS, TRLSection, hint, no_bool_for_number, section

Source = Annotated[str, AfterValidator(feedback.check)]


class _Section(BaseModel):
    # allow_inf_nan=False: YAML's .nan and .inf are floats, and every range check passes NaN (NaN > 0 is False
    # but so is NaN <= 0); a NaN learning rate or bias only shows up as NaN labels or a NaN model much later.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _no_bool = field_validator("*", mode="before")(classmethod(no_bool_for_number))


# Characters a path may hold. No stage command passes a path through a shell any more (dvc.yaml runs
# `python stages/<name>.py` alone: weakalign.cli), but paths are still written into dvc.yaml's deps and outs, git,
# logs and the commands users copy from docs: letters, digits and . _ / + - read the same in all of them.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


def _check_path(value: str) -> str:
    if not SAFE_PATH.fullmatch(value) or value.startswith("-"):
        bad = sorted({c for c in value if not SAFE_PATH.fullmatch(c)}) or ["a leading '-'"]
        raise ValueError(f"{value!r} holds {', '.join(map(repr, bad))}: a path may hold only letters, digits and "
                         ". _ / + - (it is written into dvc.yaml's deps and outs, git and copied commands)")
    return value


SafePath = Annotated[str, AfterValidator(_check_path)]

# The project's own files and folders (the layout every checkout has): no output may be written over or into them.
PROJECT = {".git", ".dvc", ".ci", "src", "stages", "tests", "docs", "presets", "scripts", "benchmarks", "study", "local_models",
           "README.md", "params.yaml", "dvc.yaml", "dvc.lock", "pyproject.toml", "Makefile", ".gitignore",
           ".dvcignore", "LICENSE", ".venv"}


def _check_output(value: str) -> str:
    """An output path stays inside the repository and off its own files: `paths.report: README.md` overwrote the
    README, and an absolute or `../` path let DVC clear a folder of the user's before the stage ran."""
    norm = os.path.normpath(value)
    if os.path.isabs(value) or norm == ".." or norm.startswith("../"):
        raise ValueError(f"{value!r} leaves the repository: an output path must be relative and stay inside it "
                         "(DVC deletes an output before its stage runs)")
    if norm == "." or norm.split("/")[0] in PROJECT:
        raise ValueError(f"{value!r} is (or lies in) the project's own {norm.split('/')[0]!r}: an output there "
                         "would overwrite the project's files; pick a path under data/, models/, metrics/, "
                         "reports/ or plots/")
    return value


OutputPath = Annotated[SafePath, AfterValidator(_check_output)]


def _check_model_ref(ref: str) -> str:
    """A model reference's `@layers=<k>` suffix (weakalign.refs), checked when params load."""
    parse_layers(ref)
    return ref


ModelRef = Annotated[str, AfterValidator(_check_model_ref)]


class Base(_Section):
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for every random choice: sampling, annotators, "
                      "splits, training. From 0 to 2**32 - 1, what NumPy's seeding (through transformers' "
                      "set_seed) accepts.")
    model: ModelRef = Field(
        "embedded:smollm2",
        description="Starting policy of the target (and, by default, of the weak teacher): `embedded:smollm2`, "
        "`tiny-random`, a local model directory or a Hugging Face Hub id. `base_model` writes it to "
        "`paths.base_model`.",
    )
    trust_remote_code: bool = Field(False, description="Allow models that ship Python code. Off unless you trust it.")
    num_processes: int = Field(1, ge=1, description="Processes per training stage (sft, train_weak, label_rm, "
                               "align): above 1 the stage relaunches itself under `accelerate launch` (DDP; one "
                               "process per GPU, or gloo on CPU). Batch sizes are per process: the effective batch "
                               "grows with it.")
    accelerate_config: str | None = Field(None, description="An `accelerate config` YAML file for those launches, "
                                          "e.g. `presets/accelerate/deepspeed-zero2.yaml`; null: plain DDP.")

    @field_validator("accelerate_config")
    @classmethod
    def _config_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():  # else `accelerate launch` fails once a stage trains
            raise ValueError(f"{value!r}: no such file (an `accelerate config` YAML file, relative to the repository)")
        return value


class Paths(_Section):
    """Every path of the pipeline. dvc.yaml names them in deps and outs as ${paths.x}; each stage resolves its
    arguments from them (the templates of its docstring command, weakalign.cli), never through a shell."""

    source_pairs: OutputPath = "data/source/pairs.jsonl"  # ingest: a jsonl/hf source's pairs (empty for the sandbox)
    prompts_all: OutputPath = "data/prompts/all.jsonl"  # ingest: every prompt, before the holdout
    prompts_train: OutputPath = "data/prompts/train.jsonl"
    prompts_test: OutputPath = "data/prompts/test.jsonl"
    base_model: OutputPath = "models/base"
    pairs: OutputPath = "data/pairs.jsonl"
    annotated: OutputPath = "data/annotated.jsonl"
    labeled: OutputPath = "data/split/labeled.jsonl"
    unlabeled: OutputPath = "data/split/unlabeled.jsonl"
    reference: OutputPath = "data/reference.jsonl"  # the targets' reference log-probs of D_u, shared by every source
    sft_target: OutputPath = "models/sft/target"  # sft: the target's starting point (a note only, unless sft.enabled)
    sft_weak: OutputPath = "models/sft/weak"  # sft: the weak LLM's, when train_weak.model is not `base`
    weak_model: OutputPath = "models/weak"
    weak_labels: OutputPath = "data/labels/weak.jsonl"
    rm_labels: OutputPath = "data/labels/rm.jsonl"  # label_rm (empty unless label_rm.enabled)
    judge_labels: OutputPath = "data/labels/judge.jsonl"  # label_judge (empty unless label_judge.enabled)
    feedback: OutputPath = "data/feedback"
    targets: OutputPath = "models/targets"
    generations: OutputPath = "data/eval/generations.jsonl"
    report: OutputPath = "reports/summary.md"
    report_figure: OutputPath = "reports/summary.png"  # report: gold reward and agreement, embedded in the report
    metrics: OutputPath = "metrics"
    plots: OutputPath = "plots"
    dvclive: OutputPath = "dvclive"
    checkpoints: OutputPath = "checkpoints"  # work folders that let a killed stage resume; not DVC outputs, git-ignored

    @model_validator(mode="after")
    def _apart(self) -> Paths:
        """Two keys naming one file make one stage overwrite another's output; a path inside another (say
        `checkpoints: models/weak/ckpt`) is deleted with it when DVC clears that output before a run."""
        seen = {k: os.path.normpath(v) for k, v in self.model_dump().items()}
        for a, pa in seen.items():
            for b, pb in seen.items():
                if a < b and pa == pb:
                    raise ValueError(f"paths.{a} and paths.{b} are the same path ({pa!r}): each output needs its own")
                if a != b and pa.startswith(pb.rstrip("/") + "/"):
                    raise ValueError(f"paths.{a} ({pa!r}) lies inside paths.{b} ({pb!r}); keep them apart")
        return self


class Data(_Section):
    """Where the preference pairs come from (weakalign.sources reads them; every format is described there).

    `sandbox` is the embedded default: the base model samples a pair for each prompt of `path` and simulated
    humans label it against the gold judge. `jsonl` and `hf` read real preference data with its own human labels.
    """

    source: Literal["sandbox", "jsonl", "hf"] = Field(
        "sandbox", description="`sandbox`: pairs generated by the pipeline for the prompts in `path`; `jsonl`: a "
        "local preference file (`path`); `hf`: a dataset loaded with `datasets.load_dataset` (`name`).")
    path: SafePath = Field(
        "data/raw/prompts.jsonl", description="The local file the source reads, tracked by DVC: the prompts "
        "(`sandbox`), or the preference file (`jsonl`; `.jsonl` or `.jsonl.gz`, prompt/chosen/rejected or HH "
        "dialogues). `hf` does not read it; leave the default.")

    @field_validator("path")
    @classmethod
    def _regular(cls, value: str) -> str:
        p = Path(value)
        if p.exists() and not (p.is_file() or p.is_dir()):  # DVC would block hashing it, before any stage runs
            raise ValueError(f"{value!r} is not a regular file (a FIFO, socket or device would block or never end)")
        return value

    name: str | None = Field(None, description="`hf`: a Hugging Face dataset id (e.g. `Anthropic/hh-rlhf`), a "
                             "local dataset directory, or a local data file (json, jsonl, jsonl.gz, parquet, csv).")
    config: str | None = Field(None, description="`hf`: the dataset's configuration name (e.g. `comparisons` for "
                               "openai/summarize_from_feedback); null for the default.")
    data_dir: str | None = Field(None, description="`hf`: a folder inside the dataset, e.g. `harmless-base` for one "
                                 "subset of Anthropic/hh-rlhf; null for all of it.")
    split: str = Field("train", description="`hf`: the split to read; slices work (`train[:1000]`). A single local "
                       "data file has only `train`.")
    format: Literal["auto", "standard", "hh", "summarize_from_feedback", "carper_comparisons"] = Field(
        "auto", description="Row format of `jsonl`/`hf`; `auto` detects it from the dataset name, then from the "
        "first row's columns.")
    columns: dict[str, str] | None = Field(
        None, description="Renames the dataset's columns onto `prompt`, `chosen` and `rejected`, e.g. "
        "`{question: prompt, good: chosen, bad: rejected}`; without `prompt` the two are HH dialogues.")
    max_rows: int | None = Field(None, ge=1, description="Read only the first N rows of `jsonl`/`hf`; null reads all.")

    @model_validator(mode="after")
    def _combination(self) -> Data:
        real_only = ("name", "config", "data_dir", "split", "format", "columns", "max_rows")
        if self.source == "sandbox":
            given = self._given(*real_only)
            if given:
                raise ValueError(f"source 'sandbox' generates its pairs and takes no {', '.join(given)}")
            if not self.path.endswith(".jsonl"):
                raise ValueError(f"path {self.path!r}: the sandbox's prompts are a .jsonl file")
        elif self.source == "jsonl":
            if not self.path.endswith((".jsonl", ".jsonl.gz")):
                raise ValueError(f"path {self.path!r}: expected a .jsonl or .jsonl.gz file")
            given = self._given("name", "config", "data_dir", "split")
            if given:
                raise ValueError(f"source 'jsonl' reads `path`; {', '.join(given)} belong to source 'hf'")
        elif not self.name:
            raise ValueError("source 'hf' needs `name`, a dataset id or a local dataset directory or file")
        if self.columns is not None:
            self._check_columns()
        return self

    def _given(self, *keys: str) -> list[str]:
        # Compared with the defaults (not model_fields_set), so a dumped and reloaded config validates the same.
        return [k for k in keys if getattr(self, k) != type(self).model_fields[k].default]

    def fixed_format(self) -> str | None:
        """The format set by `format` or implied by `columns`; None where the data must tell (auto)."""
        if self.format != "auto":
            return self.format
        if self.columns is not None:
            return "standard" if "prompt" in self.columns.values() else "hh"
        return None

    def _check_columns(self) -> None:
        roles = list(self.columns.values())
        if sorted(set(roles)) != sorted(roles) or not set(roles) <= {"prompt", "chosen", "rejected"}:
            raise ValueError(f"columns: values must be distinct roles out of prompt, chosen, rejected; got {roles}")
        if not {"chosen", "rejected"} <= set(roles):
            raise ValueError(f"columns: must map a column onto both `chosen` and `rejected`, got {roles}")
        wanted = "standard" if "prompt" in roles else "hh"
        if self.format not in ("auto", wanted):
            raise ValueError(f"columns: a mapping {'with' if wanted == 'standard' else 'without'} `prompt` gives "
                             f"format {wanted!r}, but format is {self.format!r}")


class Holdout(_Section):
    n_test: int = Field(128, ge=1, description="Prompts held out for evaluation; never seen in training or labeling.")
    n_train: int | None = Field(472, ge=2, description="Training prompts kept (a seeded sample of the rest); null "
                                "keeps all. Each becomes one response pair.")


class Generation(_Section):
    """Sampling settings shared by `generate_pairs` and `evaluate`."""

    max_new_tokens: int = Field(32, ge=1, le=1024, description="New tokens per response.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Sample from the k most likely tokens; 0 disables the cut.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")
    bf16: bool = Field(True, description="Run generation in bfloat16 (fast on CPUs with AMX and on GPUs). Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.models.bf16_usable).")


class GeneratePairs(Generation):
    styles: list[str] = Field(
        default_factory=lambda: ["", "Write it in a warm, enthusiastic tone.", "Write it in a harsh, critical tone."],
        max_length=16, description="Sampling policies of the sandbox's response pool, as "
        "instructions appended to the prompt when sampling only (every later stage sees the plain prompt); `\"\"` "
        "is the plain prompt. Each prompt's two responses come from two different styles, a seeded draw, so the "
        "pool holds real quality differences (as UltraFeedback samples several models). Empty: two samples of the "
        "plain prompt. Only the sandbox samples its pool: with real data it is unused (read as empty).")
    max_attempts: int = Field(
        3, ge=1, description="Sampling rounds for prompts whose two responses came out empty or identical; pairs "
        "still unusable after that are dropped and counted in metrics/pairs.json.",
    )

    @field_validator("styles")
    @classmethod
    def _styles(cls, styles: list[str]) -> list[str]:
        if len(set(styles)) != len(styles):
            raise ValueError(f"duplicates in {styles}")
        if len(styles) == 1:
            raise ValueError(f"needs at least two different styles (a pair draws two), got {styles}")
        for style in styles:
            if len(style) > 300 or not style.isprintable():
                raise ValueError(f"{style[:40]!r} must be printable and at most 300 characters")
        return styles


class Judge(_Section):
    """The gold judge every feedback source and every target is measured against.

    `vader`: the sandbox's (VADER sentiment of the response, minus penalties that make it hard to game; the
    `repeat_*`, `copy_penalty`, `min_words`, `short_score` keys). `tone`: the sandbox's tone task (the same, times
    +1 or -1 as the prompt requests a positive or a negative continuation). `reward_model`: a Hugging Face
    sequence-classification reward model (`model`, `batch_size`, `max_length`), e.g. on real preference data.
    `none`: no gold judge (real data without one); gold metrics are then null.
    """

    name: Literal["vader", "tone", "reward_model", "none"] = Field(
        "vader", description="Which gold judge scores responses: `vader` (the sandbox's review continuations), "
        "`tone` (the sandbox's continuations in a requested tone), `reward_model` (`model`) or `none`.")
    model: ModelRef | None = Field(None, description="`reward_model`: a Hub id (e.g. `OpenAssistant/reward-model-"
                              "deberta-v3-large-v2`) or a local directory of a sequence-classification model with "
                              "one output, safetensors weights only.")
    batch_size: int = Field(16, ge=1, description="`reward_model`: (prompt, response) pairs scored per forward pass.")
    max_length: int = Field(1024, ge=8, description="`reward_model`: tokens kept per scored text (longer ones are "
                            "truncated from the end, and counted in the log).")
    repeat_ngram: int = Field(3, ge=2, description="n of the n-grams whose repeats are penalised.")
    repeat_penalty: float = Field(1.0, ge=0, description="Penalty per unit of repeated-n-gram fraction.")
    copy_penalty: float = Field(1.0, ge=0, description="Penalty per unit of the response's n-grams copied from the prompt.")
    min_words: int = Field(4, ge=0, description="Responses with fewer words get `short_score`.")
    short_score: float = Field(-1.0, description="Score of an empty or too-short response.")

    @model_validator(mode="after")
    def _model_iff_reward_model(self) -> Judge:
        if self.name == "reward_model" and not self.model:
            raise ValueError("model: judge.name 'reward_model' needs the reward model's Hub id or local directory")
        if self.name != "reward_model" and self.model is not None:
            raise ValueError(f"model: only judge.name 'reward_model' takes a model (name is {self.name!r})")
        return self


class Annotate(_Section):
    tau: float = Field(
        0.5, gt=0,
        description="Bradley-Terry temperature of the simulated human annotators: P(1 > 2) = sigmoid((g1 - g2 + "
        "length_bias * (words1 - words2) / 100) / tau). Smaller tau: less noise.",
    )
    length_bias: float = Field(0.0, description="Extra gold-score units per 100 words of length advantage.")


class Split(_Section):
    n_labeled: int | None = Field(256, ge=1, description="Pairs in D_l, which keeps its human labels and trains the "
                                  "weak teacher. Set it or `labeled_fraction`, not both.")
    labeled_fraction: float | None = Field(
        None, gt=0, lt=1, description="D_l as a share of all pairs, in (0, 1) (the paper's labeled fraction, e.g. "
        "0.125); rounded to whole pairs. Set it or `n_labeled`, not both.",
    )
    n_unlabeled: int | None = Field(
        192, ge=1, description="Pairs in D_u, labeled by the weak teacher; null takes every remaining pair."
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


# TRL's sections: the fields of TRL's own config classes, read from TRL's source (weakalign.trl_config), with
# TRL's defaults; params.yaml sets the ones this pipeline changes. Each passes straight into the TRL class.
DPO = section("DPOConfig", doc="TRL `DPOConfig` fields, verbatim (any of them; TRL's docs give their meaning).")
Reward = section("RewardConfig", doc="TRL `RewardConfig` fields, verbatim (the Bradley-Terry reward model of the "
                 "`rm` labeler).")
SFTFields = section("SFTConfig", doc="TRL `SFTConfig` fields, verbatim (supervised fine-tuning on the "
                    "human-chosen responses of D_l).")
Lora = section("ModelConfig", only=LORA_FIELDS, doc="""PEFT LoRA: the adapter fields of TRL's `ModelConfig`
(they pass through `trl.get_peft_config`).

Off (`use_peft: false`), the model is fully fine-tuned. On, only low-rank adapters train; the saved model is the
adapter (plus the path of its base), and the DPO reference is the same base with the adapter switched off, during
training and when the weak teacher labels D_u: never a second copy of the weights.""")


class SFT(_Section):
    """Optional supervised fine-tuning before DPO, as DPO recipes for base models do (stage `sft`).

    On, the target's starting point (`base.model`) and, if it is another model, the weak LLM's
    (`train_weak.model`) are fine-tuned on the human-chosen responses of D_l; `train_weak`, `label_weak`,
    `label_rm`, `align` and `evaluate` then start from (and compare against) the fine-tuned models.
    """

    enabled: bool = Field(False, description="Run SFT first. Off, the stage writes a note and no model in about a "
                          "second, and every stage starts from the models as they are.")
    sft: SFTFields = SFTFields()
    lora: Lora = Lora()




class TrainWeak(_Section):
    model: ModelRef = Field(
        "base", description="The weak LLM: `base` (the output of `base_model`) or any model reference (see "
        "`base.model`). Its starting point is also the reference of its implicit reward. A suffix `@layers=<k>` "
        "keeps only the first k decoder layers: `base@layers=8` (the default base cut to 8 of its 30 layers, "
        "56.6 M of 134.5 M parameters) or `embedded:smollm2@layers=8` is a genuinely weaker teacher from the same "
        "weights.")
    dpo: DPO = DPO()
    lora: Lora = Lora()

    def model_ref(self, base_dir: str) -> str:
        """The weak LLM's starting point (also its implicit reward's reference): `base` means `base_dir`, and
        `base@layers=k` means `base_dir@layers=k` (load_model prunes the saved base model)."""
        if self.model == "base" or self.model.startswith("base@"):
            return base_dir + self.model.removeprefix("base")
        return self.model


class LabelWeak(_Section):
    batch_size: int = Field(32, ge=1, description="Pairs per forward pass.")
    bf16: bool = Field(True, description="Score in bfloat16 autocast (about 1.3x faster here) instead of exact "
                       "fp32. On the default run the bf16 margins are within 0.26 of fp32 (mean 0.06) and 110 of "
                       "112 labels equal the fp32 ones; the two flips are near-ties (docs/PERFORMANCE.md). Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.models.bf16_usable).")


class LabelRM(_Section):
    """The `rm` labeler: a Bradley-Terry reward model trained on D_l from the weak model's starting point."""

    enabled: bool = Field(False, description="Train the reward model and label D_u with it (stage label_rm). Off, "
                          "the stage writes empty labels and null metrics in seconds. Needed by the source `rm`.")
    batch_size: int = Field(32, ge=1, description="Texts per forward pass when scoring D_u.")
    reward: Reward = Reward()
    lora: Lora = Lora()


class LabelJudge(_Section):
    """The `judge` labeler: the base model asked zero-shot which response is better, in both orders."""

    enabled: bool = Field(False, description="Label D_u with the prompted judge (stage label_judge). Off, the stage "
                          "writes empty labels and null metrics in seconds. Needed by the source `judge`.")
    batch_size: int = Field(16, ge=1, description="Judge prompts per forward pass.")
    max_length: int = Field(1024, ge=16, description="Tokens of one judge prompt (prompt and both responses); a "
                            "longer one is not judged and counts as undecided (`n_too_long`).")
    bf16: bool = Field(True, description="bfloat16 autocast instead of exact fp32. Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.models.bf16_usable).")
    break_ties: bool = Field(False, description="For the feedback source `judge` only: label a tie by the sign of "
                             "its mean log-odds over both orders (position bias cancels in the mean) instead of "
                             "leaving it out. The labels file and the agreement metrics keep ties as ties.")


class Align(_Section):
    sources: list[Source] = Field(["human", "weak", "gold", "random"], min_length=1,
                                  description=feedback.describe())
    dpo: DPO = DPO()
    lora: Lora = Lora()

    @model_validator(mode="after")
    def _unique(self) -> Align:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: duplicates in {self.sources}")
        return self


class Compare(_Section):
    margin_bins: int = Field(5, ge=1, le=50, description="Quantile bins of |weak margin| for agreement-by-margin.")
    confident_weighting: Literal["none", "margin"] = Field(
        "none", description="Feedback source `weak_confident`: `none` trains on each kept pair once; `margin` "
        "weights each pair by its |margin| (relative to the mean): `align` draws as many pairs as were kept, with "
        "replacement, in proportion to the weights (seeded), so the expected loss is the weighted loss.")
    confident_margin: float = Field(0.1, ge=0, description="Feedback source `weak_confident` keeps the weak labels "
                                    "whose |reward margin| is at least this.")


class Evaluate(Generation):
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")
    heldout_pairs: int = Field(64, ge=0, description="D_l pairs (never seen by a target) on which each target's "
                               "own implicit reward is scored against the gold labels: its held-out preference "
                               "accuracy, which says whether DPO learned the labels' preference or memorised "
                               "pairs. 0: not measured.")
    kl_prompts: int | None = Field(64, ge=1, description="Test prompts (the first N, in the holdout's seeded "
                                   "order) on whose samples each target's log-ratio to its start, the KL "
                                   "estimate, is computed; null: all. A diagnostic of drift, so fewer prompts "
                                   "than the gold reward's: it is the costliest part of `evaluate` on a CPU.")


class Report(_Section):
    n_examples: int = Field(5, ge=0, description="Most confident weak-vs-human disagreements shown in the report.")


class Study(_Section):
    """`make study` (weakalign.study): the pipeline over seeds, each run an experiment; not read by any stage.

    Every seed runs every source in `sources` on one teacher; each entry of `teachers` reruns the seeds with
    another weak teacher (only `weak` is aligned there: the other targets would be the same), so that teachers of
    several strengths sit on the same axes as the calibration sources. A run's overrides are `set`, then the
    teacher's, then `base.seed`, each a `dvc exp run -S key=value`."""

    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=1, description="Seeds; a seed redraws the holdout, the "
                             "sampled pairs, D_l/D_u, the annotators and training.")
    sources: list[Source] = Field(
        ["gold", "human", "weak", "random", "flipped", "noisy_gold_20", "noisy_gold_30"],
        min_length=1, description="`align.sources` of every seed's main run (include `weak` and `human`).")
    set: dict[str, Any] = Field({}, description="Params for every run of the study, `key.path: value` "
                                "(e.g. cheaper training). With teachers that change `split`, set "
                                "`split.n_unlabeled` so D_u is the same for every teacher.")
    teachers: dict[str, dict[str, Any]] = Field(
        {"dl_16": {"split.n_labeled": 16, "split.labeled_fraction": None},
         "dl_64": {"split.n_labeled": 64, "split.labeled_fraction": None},
         "layers_8": {"train_weak.model": "base@layers=8"}}, description="Extra weak teachers, name -> params (e.g. `layers_8: {train_weak.model: "
        "embedded:smollm2@layers=8}` or `dl_32: {split.n_labeled: 32}`); reported as `weak@<name>`.")
    tost_margin: float = Field(0.1, gt=0, allow_inf_nan=False, description="Equivalence margin of weak against "
                               "human in gold-reward units: TOST declares them equivalent when the 90% interval of "
                               "the per-seed difference lies within +-margin. Kept for comparison: the report's "
                               "verdict is `equivalence_margin_fraction`'s.")
    equivalence_margin_fraction: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, description="Equivalence margin of weak against human as a share of "
        "the human labels' own gain over coin flips (|mean human - random|, paired by seed): a fixed margin in "
        "gold-reward units can exceed what human labels add at all, so that random labels would pass as "
        "'equivalent to human'. No equivalence is declared while human - random's interval is not above 0.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Level of every test (Holm-adjusted over the family).")

    @model_validator(mode="after")
    def _study(self) -> Study:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicates in {self.seeds}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: duplicates in {self.sources}")
        for name, t in self.teachers.items():
            if not name.replace("_", "").isalnum():
                raise ValueError(f"teachers: name {name!r} must be letters, digits and underscores")
            # An allowlist: anything else (the judge, the annotators, D_u, the targets' start) would change more
            # than the teacher while its runs are still paired with the main runs' human and base arms.
            bad = [k for k in t if not (k.startswith(("train_weak.", "label_weak."))
                                        or k in ("split.n_labeled", "split.labeled_fraction"))]
            if bad:
                raise ValueError(f"teachers.{name}: {bad[0]} would change more than the weak teacher (a teacher "
                                 "may set train_weak.*, label_weak.*, split.n_labeled, split.labeled_fraction)")
        return self


class Params(_Section):
    """Every section. `check_here()` adds what depends on this machine rather than on the file."""

    base: Base = Base()
    data: Data = Data()
    paths: Paths = Paths()
    holdout: Holdout = Holdout()
    generate_pairs: GeneratePairs = GeneratePairs()
    judge: Judge = Judge()
    annotate: Annotate = Annotate()
    split: Split = Split()
    sft: SFT = SFT()
    train_weak: TrainWeak = TrainWeak()
    label_weak: LabelWeak = LabelWeak()
    label_rm: LabelRM = LabelRM()
    label_judge: LabelJudge = LabelJudge()
    compare: Compare = Compare()
    align: Align = Align()
    evaluate: Evaluate = Evaluate()
    report: Report = Report()
    study: Study = Study()

    def check_here(self, source: str = "params") -> None:
        """What a valid file can still not do on this machine, said before any stage loads a model: offline
        (HF_HUB_OFFLINE), every Hub id it names must be in the local cache (transformers spent 52 s retrying before
        its traceback); every local model directory must lie under local_models/, the folder DVC hashes as a dep of
        every stage that loads one. ParamsError naming the keys. Every stage runs it (weakalign.cli), and
        `weakalign check`."""
        refs = {"base.model": self.base.model, "train_weak.model": self.train_weak.model}
        if self.judge.name == "reward_model" and self.judge.model:
            refs["judge.model"] = self.judge.model
        bad = []
        for key, ref in refs.items():
            try:
                check_offline_cache(ref)
                check_local_dir(ref)
            except ValueError as e:
                bad.append(f"  {key}: {e}")
        if bad:
            raise ParamsError(f"{source}: cannot run here\n" + "\n".join(bad))

    @model_validator(mode="after")
    def _input_is_not_an_output(self) -> Params:
        src = os.path.normpath(self.data.path)
        for key, out in self.paths.model_dump().items():
            out = os.path.normpath(out)
            if src == out or src.startswith(out.rstrip("/") + "/"):
                raise ValueError(f"data.path ({src!r}) is, or lies inside, paths.{key} ({out!r}): the pipeline "
                                 "would overwrite its own input")
        return self

    @model_validator(mode="after")
    def _judge_fits_data(self) -> Params:
        if self.data.source == "sandbox" and self.judge.name == "none":
            raise ValueError("judge.name: the sandbox's simulated humans label by the gold judge; it cannot be "
                             "'none' with data.source 'sandbox'")
        if self.data.source != "sandbox" and self.judge.name in ("vader", "tone"):
            raise ValueError(f"judge.name: {self.judge.name!r} scores the sandbox's review continuations, not "
                             f"data.source {self.data.source!r}; set judge.name: none (gold metrics are then null)")
        gold_based = [s for s in self.align.sources if feedback.get(s).needs_gold]
        if self.judge.name == "none" and gold_based:
            raise ValueError(f"align.sources: {gold_based[0]!r} needs a gold judge, and judge.name is 'none'")
        if self.generate_pairs.styles and self.data.source != "sandbox":
            # Like the other sampling keys, unused with real data (it brings its own responses): emptied, so that no
            # stage or metric reads a pool that was never drawn, and so that the default params.yaml with only
            # data.source changed runs (sections are frozen once built).
            object.__setattr__(self.generate_pairs, "styles", [])
        for source in self.align.sources:
            labeler = feedback.get(source).labeler
            if labeler and not getattr(self, f"label_{labeler}").enabled:
                raise ValueError(f"align.sources: '{source}' needs its labels; set label_{labeler}.enabled: true")
        return self


    @model_validator(mode="after")
    def _study_fixes_d_u(self) -> Params:
        touches_split = any(k.startswith("split.") for t in self.study.teachers.values() for k in t)
        if touches_split and self.study.set.get("split.n_unlabeled", self.split.n_unlabeled) is None:
            raise ValueError("study.teachers: a teacher changes split.*; set split.n_unlabeled so every teacher "
                             "labels the same D_u (the split then nests D_l)")
        return self

    def target_start(self, base_dir: str, sft_target: str) -> str:
        """Where the targets start (and what they are evaluated against): the SFT model when `sft.enabled`."""
        return sft_target if self.sft.enabled else base_dir

    def weak_start(self, base_dir: str, sft_target: str, sft_weak: str) -> str:
        """Where the weak LLM starts, which is also its implicit reward's reference and the reward model's body."""
        if not self.sft.enabled:
            return self.train_weak.model_ref(base_dir)
        return sft_target if self.train_weak.model == "base" else sft_weak


class ParamsError(ValueError):
    """A bad params file; the message names the key."""


def _hint(loc: tuple) -> str:
    """After "unknown key": for a TRL section, the pipeline key or the TRL field it looks like."""
    cls = Params
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return ""
        cls = field.annotation
    return hint(str(loc[-1]), list(cls.model_fields)) if isinstance(cls, type) and issubclass(cls, TRLSection) else ""


def parse_params(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            if not err["loc"]:  # a rule across sections (Params._judge_fits_data): its message names the keys
                lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
                continue
            key = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" + _hint(err["loc"]) if err["type"] == "extra_forbidden" else err["msg"]
            # a section-wide check's input is the whole section: its message names the key, the dump would bury it
            no_input = err["type"] == "extra_forbidden" or isinstance(err["input"], dict)
            lines.append(f"  {key}: {msg}" + ("" if no_input else f" (got {err['input']!r})"))
        raise ParamsError(f"{source}: invalid params\n" + "\n".join(lines)) from None


# Params files are read as DVC reads them (dvc.utils.serialize._yaml: ruamel.yaml, YAML 1.2, duplicate keys refused),
# so that a value cannot mean one thing to DVC's run cache and another to the stages: PyYAML (YAML 1.1) reads
# `n_test: 010` as 8 and `yes` as true, where DVC records 10 and "yes".
MAX_YAML_VALUES = 100_000  # values after expanding aliases: params.yaml has about 300


def _expanded_values(root) -> int:
    """How many values the document holds once every alias is expanded (an anchor used twice counts twice), without
    expanding it: a few hundred bytes of nested aliases (a "billion laughs") expand to billions of values."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    memo: dict[int, int] = {}
    # Iterative post-order walk: a node's size is 1 + its children's, each shared node computed once.
    stack: list[tuple[object, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        if isinstance(node, MappingNode):
            children = [n for kv in node.value for n in kv]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            on_path.discard(id(node))
            memo[id(node)] = min(1 + sum(memo[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if id(node) in memo:
            continue
        if id(node) in on_path:
            raise ValueError(f"line {node.start_mark.line + 1}: an alias that contains itself")
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in memo)
    return memo[id(root)]


def parse_yaml(text: str, source: str):
    """YAML text as DVC reads it; ParamsError naming `source` (and the line) for anything DVC would read otherwise
    or choke on: invalid YAML, duplicate keys, aliases that expand past MAX_YAML_VALUES values."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.error import MarkedYAMLError

    def reader():
        return YAML(typ="safe", pure=True)

    try:
        root = reader().compose(text)
        if root is None:
            return None
        try:
            n = _expanded_values(root)
        except ValueError as e:
            raise ParamsError(f"{source}: not valid params ({e})") from None
        if n > MAX_YAML_VALUES:
            raise ParamsError(f"{source}: its aliases expand to more than {MAX_YAML_VALUES:,} values; a params file "
                              "holds a few hundred (an alias bomb?)")
        return reader().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = (e.problem or str(e)).split("\n")[0]
        raise ParamsError(f"{source}{where}: not valid YAML ({problem})") from None
    except YAMLError as e:
        raise ParamsError(f"{source}: not valid YAML ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    except RecursionError:
        raise ParamsError(f"{source}: nested too deeply to be a params file") from None


def read_yaml(path: str | Path):
    """A params file, read as DVC reads it (parse_yaml); ParamsError naming the file (and line) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ParamsError(f"{path}: is a directory, not a file")
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise ParamsError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ParamsError(f"{path}: cannot read it ({e})") from None
    return parse_yaml(text, str(path))


# A preset names the file it overlays: `extends: ../params.yaml` (relative to the preset). params.yaml is the one
# home of every default; a preset holds only what differs from it.
EXTENDS = "extends"


def _merge(model: type[BaseModel] | None, base: Any, over: Any) -> Any:
    """`over` onto `base` as the schema nests them: a section (a pydantic model: `align`, `align.dpo`) merges key
    by key; any other value (a number, a list, a free mapping such as `study.teachers`) is replaced whole."""
    if model is None or not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for key, value in over.items():
        field = model.model_fields.get(key)
        sub = field.annotation if field is not None else None
        sub = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
        out[key] = _merge(sub, base[key], value) if key in base else value
    return out


def compose(path: str | Path) -> dict:
    """A params file as a whole: the file itself, or, when it says `extends: <file>`, that file (composed in turn)
    with this one's keys merged onto it (`_merge`). ParamsError naming the file for a bad or circular `extends`."""
    path, seen = Path(path), []
    layers = []
    while True:
        if path.resolve() in seen:
            raise ParamsError(f"{path}: `extends` comes back to a file it started from")
        seen.append(path.resolve())
        raw = read_yaml(path)
        if not isinstance(raw, dict) or EXTENDS not in raw:
            break
        parent = raw.pop(EXTENDS)
        if not isinstance(parent, str):
            raise ParamsError(f"{path}: {EXTENDS}: a file name, not {parent!r}")
        layers.append(raw)
        path = path.parent / parent
    for layer in reversed(layers):
        raw = _merge(Params, raw, layer)
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(compose(path), str(path))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m weakalign.params",
                                     description="Validate params files (types, ranges, unknown keys) without "
                                     "running anything; exit 2 naming the first bad key.")
    parser.add_argument("files", nargs="*", default=["params.yaml"], help="params files (default: params.yaml)")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            load_params(path).check_here(path)
        except ParamsError as e:
            print(e, file=sys.stderr)
            return 2
        print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
