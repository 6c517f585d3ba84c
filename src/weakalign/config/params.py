"""The params schema: every key of params.yaml, its type, checks and meaning, validated before any heavy work.

The defaults have one home, params.yaml: the schema holds no second copy, so every key must be in the file a run
reads (a preset takes the rest from params.yaml with `extends:`; a key left out fails naming it).

Top-level keys are the stage names, plus `base` (seed and model shared by all stages) and `paths` (every file the
pipeline reads or writes, referenced from dvc.yaml as `${paths.x}` and handed to the stages as arguments).
Unknown keys are rejected. Training sections (`train_weak.dpo`, `align.dpo`, `label_rm.reward`, `sft.sft`, every
`lora`) are TRL's own config classes, read from TRL's source (weakalign.config.trl_config): any field of `DPOConfig`,
`RewardConfig`, `SFTConfig` or `ModelConfig`'s LoRA fields, with TRL's defaults, passed straight into TRL.

Check a params file by hand: ``weakalign check params.yaml`` (this module's ``main``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator

from weakalign.config import feedback
from weakalign.config.params_files import ParamsError, read_yaml
from weakalign.config.params_sections import (Annotate, Base, Data, GeneratePairs, Generation, Holdout, Judge, Paths,
                                              Split, _Section)
from weakalign.config.params_training import (DPO, SFT, Align, Compare, Evaluate, LabelJudge, LabelRM, LabelWeak, Lora,
                                              Report, Reward, SFTFields, Study, TrainWeak)
from weakalign.config.refs import check_local_dir, check_offline_cache
from weakalign.config.trl_config import TRLSection, hint

# The sections live in params_sections (data) and params_training (training, labeling, evaluation, the study), the
# file reading in params_files; this module is their whole, and the one name to import them by.
__all__ = ["DPO", "EXTENDS", "SFT", "Align", "Annotate", "Base", "Compare", "Data", "Evaluate", "Generation",
           "GeneratePairs", "Holdout", "Judge", "LabelJudge", "LabelRM", "LabelWeak", "Lora", "Params",
           "ParamsError", "Paths", "Report", "Reward", "SFTFields", "Split", "Study", "TrainWeak", "compose",
           "load_params", "merge", "parse_params", "read_yaml"]


class Params(_Section):
    """Every section. `check_here()` adds what depends on this machine rather than on the file."""

    base: Base
    data: Data
    paths: Paths
    holdout: Holdout
    generate_pairs: GeneratePairs
    judge: Judge
    annotate: Annotate
    split: Split
    sft: SFT
    train_weak: TrainWeak
    label_weak: LabelWeak
    label_rm: LabelRM
    label_judge: LabelJudge
    compare: Compare
    align: Align
    evaluate: Evaluate
    report: Report
    study: Study

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
            msg = ("unknown key" + _hint(err["loc"]) if err["type"] == "extra_forbidden" else
                   f"missing: every key's default is in params.yaml (a preset takes them with `{EXTENDS}: "
                   "../params.yaml`)" if err["type"] == "missing" else err["msg"])
            # a section-wide check's input is the whole section: its message names the key, the dump would bury it
            no_input = err["type"] in ("extra_forbidden", "missing") or isinstance(err["input"], dict)
            lines.append(f"  {key}: {msg}" + ("" if no_input else f" (got {err['input']!r})"))
        raise ParamsError(f"{source}: invalid params\n" + "\n".join(lines)) from None


# A preset names the file it overlays: `extends: ../params.yaml` (relative to the preset). params.yaml is the one
# home of every default; a preset holds only what differs from it.
EXTENDS = "extends"


def merge(model: type[BaseModel] | None, base: Any, over: Any) -> Any:
    """`over` onto `base` as the schema nests them: a section (a pydantic model: `align`, `align.dpo`) merges key
    by key; any other value (a number, a list, a free mapping such as `study.teachers`) is replaced whole."""
    if model is None or not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for key, value in over.items():
        field = model.model_fields.get(key)
        sub = field.annotation if field is not None else None
        sub = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
        out[key] = merge(sub, base[key], value) if key in base else value
    return out


def compose(path: str | Path) -> dict:
    """A params file as a whole: the file itself, or, when it says `extends: <file>`, that file (composed in turn)
    with this one's keys merged onto it (`merge`). ParamsError naming the file for a bad or circular `extends`."""
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
        raw = merge(Params, raw, layer)
    return raw


def load_params(path: str | Path = "params.yaml", changes: dict | None = None) -> Params:
    """A params file, composed (`extends`), with `changes` (nested sections, as in a preset) merged on top."""
    return parse_params(merge(Params, compose(path), changes or {}), str(path))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="weakalign check",
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
