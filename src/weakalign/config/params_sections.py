"""The params sections of the data side (weakalign.config.params holds the whole): `base`, `paths`, `data`, `holdout`,
`generate_pairs`, `judge`, `annotate`, `split`, and the value types every section uses (safe paths, output
paths, model references, feedback sources)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from weakalign.config import feedback
from weakalign.config.refs import parse_layers
from weakalign.config.trl_config import no_bool_for_number

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
    """A model reference's `@layers=<k>` suffix (weakalign.config.refs), checked when params load."""
    parse_layers(ref)
    return ref


ModelRef = Annotated[str, AfterValidator(_check_model_ref)]


class Base(_Section):
    seed: int = Field(ge=0, le=2**32 - 1, description="Seed for every random choice: sampling, annotators, "
                      "splits, training. From 0 to 2**32 - 1, what NumPy's seeding (through transformers' "
                      "set_seed) accepts.")
    model: ModelRef = Field(
        description="Starting policy of the target (and, by default, of the weak teacher): `embedded:smollm2`, "
        "`tiny-random`, a local model directory or a Hugging Face Hub id. `base_model` writes it to "
        "`paths.base_model`.",
    )
    trust_remote_code: bool = Field(description="Allow models that ship Python code. Off unless you trust it.")
    num_processes: int = Field(ge=1, description="Processes per training stage (sft, train_weak, label_rm, "
                               "align): above 1 the stage relaunches itself under `accelerate launch` (DDP; one "
                               "process per GPU, or gloo on CPU). Batch sizes are per process: the effective batch "
                               "grows with it.")
    accelerate_config: str | None = Field(description="An `accelerate config` YAML file for those launches, "
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

    source_pairs: OutputPath  # ingest: a folder, a jsonl/hf source's pairs or a README (records.io.write_records)
    prompts_all: OutputPath  # ingest: every prompt, before the holdout
    prompts_train: OutputPath
    prompts_test: OutputPath
    base_model: OutputPath
    pairs: OutputPath
    annotated: OutputPath
    labeled: OutputPath
    unlabeled: OutputPath
    reference: OutputPath  # the targets' reference log-probs of D_u, shared by every source
    sft_target: OutputPath  # sft: the target's starting point (a note only, unless sft.enabled)
    sft_weak: OutputPath  # sft: the weak LLM's, when train_weak.model is not `base`
    weak_model: OutputPath
    weak_labels: OutputPath
    rm_labels: OutputPath  # label_rm: a folder, its labels or a README (label_rm.enabled false)
    judge_labels: OutputPath  # label_judge: a folder, its labels or a README (label_judge.enabled false)
    feedback: OutputPath
    targets: OutputPath
    generations: OutputPath
    report: OutputPath
    report_figure: OutputPath  # report: gold reward and agreement, embedded in the report
    metrics: OutputPath
    plots: OutputPath
    dvclive: OutputPath
    checkpoints: OutputPath  # work folders that let a killed stage resume; not DVC outputs, git-ignored

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
    """Where the preference pairs come from (weakalign.data.sources reads them; every format is described there).

    `sandbox` is the embedded default: the base model samples a pair for each prompt of `path` and simulated
    humans label it against the gold judge. `jsonl` and `hf` read real preference data with its own human labels.
    """

    source: Literal["sandbox", "jsonl", "hf"] = Field(
        description="`sandbox`: pairs generated by the pipeline for the prompts in `path`; `jsonl`: a "
        "local preference file (`path`); `hf`: a dataset loaded with `datasets.load_dataset` (`name`).")
    path: SafePath = Field(
        description="The local file the source reads, tracked by DVC: the prompts "
        "(`sandbox`), or the preference file (`jsonl`; `.jsonl` or `.jsonl.gz`, prompt/chosen/rejected or HH "
        "dialogues). `hf` does not read it; leave the default.")

    @field_validator("path")
    @classmethod
    def _regular(cls, value: str) -> str:
        p = Path(value)
        if p.exists() and not (p.is_file() or p.is_dir()):  # DVC would block hashing it, before any stage runs
            raise ValueError(f"{value!r} is not a regular file (a FIFO, socket or device would block or never end)")
        return value

    name: str | None = Field(description="`hf`: a Hugging Face dataset id (e.g. `Anthropic/hh-rlhf`), a "
                             "local dataset directory, or a local data file (json, jsonl, jsonl.gz, parquet, csv).")
    config: str | None = Field(description="`hf`: the dataset's configuration name (e.g. `comparisons` for "
                               "openai/summarize_from_feedback); null for the default.")
    data_dir: str | None = Field(description="`hf`: a folder inside the dataset, e.g. `harmless-base` for one "
                                 "subset of Anthropic/hh-rlhf; null for all of it.")
    split: str = Field(description="`hf`: the split to read; slices work (`train[:1000]`). A single local "
                       "data file has only `train`.")
    format: Literal["auto", "standard", "hh", "summarize_from_feedback", "carper_comparisons"] = Field(
        description="Row format of `jsonl`/`hf`; `auto` detects it from the dataset name, then from the "
        "first row's columns.")
    columns: dict[str, str] | None = Field(
        description="Renames the dataset's columns onto `prompt`, `chosen` and `rejected`, e.g. "
        "`{question: prompt, good: chosen, bad: rejected}`; without `prompt` the two are HH dialogues.")
    max_rows: int | None = Field(ge=1, description="Read only the first N rows of `jsonl`/`hf`; null reads all.")

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
        # Set means a value other than the one that asks for nothing (null, `auto` detection, the `train` split a
        # one-file source is read as), not model_fields_set: params.yaml holds every key, so all are in the file.
        unset = {"split": "train", "format": "auto"}
        return [k for k in keys if getattr(self, k) not in (None, unset.get(k))]

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
    n_test: int = Field(ge=1, description="Prompts held out for evaluation; never seen in training or labeling.")
    n_train: int | None = Field(ge=2, description="Training prompts kept (a seeded sample of the rest); null "
                                "keeps all. Each becomes one response pair.")


class Generation(_Section):
    """Sampling settings shared by `generate_pairs` and `evaluate`."""

    max_new_tokens: int = Field(ge=1, le=1024, description="New tokens per response.")
    temperature: float = Field(gt=0, description="Sampling temperature.")
    top_p: float = Field(gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(ge=0, description="Sample from the k most likely tokens; 0 disables the cut.")
    batch_size: int = Field(ge=1, description="Prompts per generate() call.")
    bf16: bool = Field(description="Run generation in bfloat16 (fast on CPUs with AMX and on GPUs). Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.modeling.models.bf16_usable).")


class GeneratePairs(Generation):
    styles: list[str] = Field(
        max_length=16, description="Sampling policies of the sandbox's response pool, as "
        "instructions appended to the prompt when sampling only (every later stage sees the plain prompt); `\"\"` "
        "is the plain prompt. Each prompt's two responses come from two different styles, a seeded draw, so the "
        "pool holds real quality differences (as UltraFeedback samples several models). Empty: two samples of the "
        "plain prompt. Only the sandbox samples its pool: with real data it is unused (read as empty).")
    max_attempts: int = Field(
        ge=1, description="Sampling rounds for prompts whose two responses came out empty or identical; pairs "
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
        description="Which gold judge scores responses: `vader` (the sandbox's review continuations), "
        "`tone` (the sandbox's continuations in a requested tone), `reward_model` (`model`) or `none`.")
    model: ModelRef | None = Field(description="`reward_model`: a Hub id (e.g. `OpenAssistant/reward-model-"
                                   "deberta-v3-large-v2`) or a local directory of a sequence-classification model with "
                                   "one output, safetensors weights only.")
    batch_size: int = Field(ge=1, description="`reward_model`: (prompt, response) pairs scored per forward pass.")
    max_length: int = Field(ge=8, description="`reward_model`: tokens kept per scored text (longer ones are "
                            "truncated from the end, and counted in the log).")
    repeat_ngram: int = Field(ge=2, description="n of the n-grams whose repeats are penalised.")
    repeat_penalty: float = Field(ge=0, description="Penalty per unit of repeated-n-gram fraction.")
    copy_penalty: float = Field(ge=0, description="Penalty per unit of the response's n-grams copied from the prompt.")
    min_words: int = Field(ge=0, description="Responses with fewer words get `short_score`.")
    short_score: float = Field(description="Score of an empty or too-short response.")

    @model_validator(mode="after")
    def _model_iff_reward_model(self) -> Judge:
        if self.name == "reward_model" and not self.model:
            raise ValueError("model: judge.name 'reward_model' needs the reward model's Hub id or local directory")
        if self.name != "reward_model" and self.model is not None:
            raise ValueError(f"model: only judge.name 'reward_model' takes a model (name is {self.name!r})")
        return self


class Annotate(_Section):
    tau: float = Field(
        gt=0,
        description="Bradley-Terry temperature of the simulated human annotators: P(1 > 2) = sigmoid((g1 - g2 + "
        "length_bias * (words1 - words2) / 100) / tau). Smaller tau: less noise.",
    )
    length_bias: float = Field(description="Extra gold-score units per 100 words of length advantage.")


class Split(_Section):
    n_labeled: int | None = Field(ge=1, description="Pairs in D_l, which keeps its human labels and trains the "
                                  "weak teacher. Set it or `labeled_fraction`, not both.")
    labeled_fraction: float | None = Field(
        gt=0, lt=1, description="D_l as a share of all pairs, in (0, 1) (the paper's labeled fraction, e.g. "
        "0.125); rounded to whole pairs. Set it or `n_labeled`, not both.",
    )
    n_unlabeled: int | None = Field(
        ge=1, description="Pairs in D_u, labeled by the weak teacher; null takes every remaining pair."
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
