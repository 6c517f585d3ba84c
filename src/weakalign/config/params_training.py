"""The params sections of training, labeling, evaluation and the study (weakalign.config.params holds the whole): `sft`,
`train_weak`, `label_weak`, `label_rm`, `label_judge`, `align`, `compare`, `evaluate`, `report`, `study`; the TRL
sections (`DPO`, `Reward`, `SFTFields`, `Lora`) come from TRL's own config classes (weakalign.config.trl_config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from weakalign.config import feedback
from weakalign.config.params_sections import Generation, ModelRef, Source, _Section
from weakalign.config.trl_config import LORA_FIELDS, section


# TRL's sections: the fields of TRL's own config classes, read from TRL's source (weakalign.config.trl_config), with
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

    enabled: bool = Field(description="Run SFT first. Off, the stage writes a note and no model in about a "
                          "second, and every stage starts from the models as they are.")
    sft: SFTFields
    lora: Lora




class TrainWeak(_Section):
    model: ModelRef = Field(
        description="The weak LLM: `base` (the output of `base_model`) or any model reference (see "
        "`base.model`). Its starting point is also the reference of its implicit reward. A suffix `@layers=<k>` "
        "keeps only the first k decoder layers: `base@layers=8` (the default base cut to 8 of its 30 layers, "
        "56.6 M of 134.5 M parameters) or `embedded:smollm2@layers=8` is a genuinely weaker teacher from the same "
        "weights.")
    label_noise: float = Field(ge=0, le=1, description="The share of D_l's human labels inverted before the weak "
                               "LLM trains on them (exactly that share, seeded by base.seed, nested across shares; "
                               "weakalign.data.split.flip_labels): a teacher made weaker by its supervision alone, "
                               "with D_u and every other source's labels unchanged, so its runs pair with the "
                               "default's. 0: the human labels as they are; 0.5: a coin's.")
    dpo: DPO
    lora: Lora

    def model_ref(self, base_dir: str) -> str:
        """The weak LLM's starting point (also its implicit reward's reference): `base` means `base_dir`, and
        `base@layers=k` means `base_dir@layers=k` (load_model prunes the saved base model)."""
        if self.model == "base" or self.model.startswith("base@"):
            return base_dir + self.model.removeprefix("base")
        return self.model


class LabelWeak(_Section):
    batch_size: int = Field(ge=1, description="Pairs per forward pass.")
    bf16: bool = Field(description="Score in bfloat16 autocast (about 1.3x faster here) instead of exact "
                       "fp32. On the default run the bf16 margins are within 0.26 of fp32 (mean 0.06) and 110 of "
                       "112 labels equal the fp32 ones; the two flips are near-ties (docs/PERFORMANCE.md). Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.modeling.models.bf16_usable).")


class LabelRM(_Section):
    """The `rm` labeler: a Bradley-Terry reward model trained on D_l from the weak model's starting point."""

    enabled: bool = Field(description="Train the reward model and label D_u with it (stage label_rm). Off, "
                          "the stage writes a README in place of labels, and null metrics, in seconds. Needed by the "
                          "source `rm`.")
    batch_size: int = Field(ge=1, description="Texts per forward pass when scoring D_u.")
    reward: Reward
    lora: Lora


class LabelJudge(_Section):
    """The `judge` labeler: the base model asked zero-shot which response is better, in both orders."""

    enabled: bool = Field(description="Label D_u with the prompted judge (stage label_judge). Off, the stage "
                          "writes a README in place of labels, and null metrics, in seconds. Needed by the source "
                          "`judge`.")
    batch_size: int = Field(ge=1, description="Judge prompts per forward pass.")
    max_length: int = Field(ge=16, description="Tokens of one judge prompt (prompt and both responses); a "
                            "longer one is not judged and counts as undecided (`n_too_long`).")
    bf16: bool = Field(description="bfloat16 autocast instead of exact fp32. Only where the hardware has native bf16 (a GPU that supports it, a CPU with AMX or AVX-512 BF16); elsewhere fp32, logged (weakalign.modeling.models.bf16_usable).")
    break_ties: bool = Field(description="For the feedback source `judge` only: label a tie by the sign of "
                             "its mean log-odds over both orders (position bias cancels in the mean) instead of "
                             "leaving it out. The labels file and the agreement metrics keep ties as ties.")


class Align(_Section):
    sources: list[Source] = Field(min_length=1,
                                  description=feedback.describe())
    dpo: DPO
    lora: Lora

    @model_validator(mode="after")
    def _unique(self) -> Align:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: duplicates in {self.sources}")
        return self


class Compare(_Section):
    margin_bins: int = Field(ge=1, le=50, description="Quantile bins of |weak margin| for agreement-by-margin.")
    confident_weighting: Literal["none", "margin"] = Field(
        description="Feedback source `weak_confident`: `none` trains on each kept pair once; `margin` "
        "weights each pair by its |margin| (relative to the mean): `align` draws as many pairs as were kept, with "
        "replacement, in proportion to the weights (seeded), so the expected loss is the weighted loss.")
    confident_margin: float = Field(ge=0, description="Feedback source `weak_confident` keeps the weak labels "
                                    "whose |reward margin| is at least this.")


class Evaluate(Generation):
    batch_size: int = Field(ge=1, description="Prompts per generate() call.")
    heldout_pairs: int = Field(ge=0, description="D_l pairs (never seen by a target) on which each target's "
                               "own implicit reward is scored against the gold labels: its held-out preference "
                               "accuracy, which says whether DPO learned the labels' preference or memorised "
                               "pairs. 0: not measured.")
    kl_prompts: int | None = Field(ge=1, description="Test prompts (the first N, in the holdout's seeded "
                                   "order) on whose samples each target's log-ratio to its start, the KL "
                                   "estimate, is computed; null: all. A diagnostic of drift, so fewer prompts "
                                   "than the gold reward's: it is the costliest part of `evaluate` on a CPU.")


class Report(_Section):
    n_examples: int = Field(ge=0, description="Most confident weak-vs-human disagreements shown in the report.")


class Study(_Section):
    """`make study` (weakalign.study): the pipeline over seeds, each run an experiment; not read by any stage.

    Every seed runs every source in `sources` on one teacher; each entry of `teachers` reruns the seeds with
    another weak teacher (only `weak` is aligned there: the other targets would be the same), so that teachers of
    several strengths sit on the same axes as the calibration sources. A run's overrides are `set`, then the
    teacher's, then `base.seed`, each a `dvc exp run -S key=value`."""

    seeds: list[int] = Field(min_length=1, description="Seeds; a seed redraws the holdout, the "
                             "sampled pairs, D_l/D_u, the annotators and training.")
    sources: list[Source] = Field(
        min_length=1, description="`align.sources` of every seed's main run (include `weak` and `human`).")
    set: dict[str, Any] = Field(description="Params for every run of the study, `key.path: value` "
                                "(e.g. cheaper training). With teachers that change `split`, set "
                                "`split.n_unlabeled` so D_u is the same for every teacher.")
    teachers: dict[str, dict[str, Any]] = Field(
        description="Extra weak teachers, name -> params (e.g. `layers_8: {train_weak.model: "
        "embedded:smollm2@layers=8}` or `dl_32: {split.n_labeled: 32}`); reported as `weak@<name>`.")
    tost_margin: float = Field(gt=0, allow_inf_nan=False, description="Equivalence margin of weak against "
                               "human in gold-reward units: TOST declares them equivalent when the 90% interval of "
                               "the per-seed difference lies within +-margin. Kept for comparison: the report's "
                               "verdict is `equivalence_margin_fraction`'s.")
    equivalence_margin_fraction: float = Field(
        gt=0, le=1, allow_inf_nan=False, description="Equivalence margin of weak against human as a share of "
        "the human labels' own gain over coin flips (|mean human - random|, paired by seed): a fixed margin in "
        "gold-reward units can exceed what human labels add at all, so that random labels would pass as "
        "'equivalent to human'. No equivalence is declared while human - random's interval is not above 0.")
    alpha: float = Field(gt=0, lt=0.5, description="Level of every test (Holm-adjusted over the family).")

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
