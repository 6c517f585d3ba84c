"""TRL's own config classes as params sections: field names, types, defaults and help read from TRL's source.

`train_weak.dpo`, `align.dpo`, `label_rm.reward` and `sft.sft` take the fields of TRL's `DPOConfig`,
`RewardConfig` and `SFTConfig` (all transformers `TrainingArguments`), and every `lora` section the LoRA fields of
TRL's `ModelConfig`. Nothing here re-declares them: the dataclasses are read with `ast` from the installed TRL and
transformers (importing them takes ~9 s, params are checked in well under one), turned into pydantic models with
the same names, annotations and defaults, so a TRL upgrade brings its fields along. What this project adds:

- ranges on the fields it documents (a negative learning rate fails here, not after the model has loaded);
- the names TRL converts or checks only later (transformers' enums such as SchedulerType and SaveStrategy, DPO
  loss types), read from their source too;
- keys the pipeline sets itself (`output_dir`, `seed`, ...) are refused, with the key that sets them.

The real TRL classes are built from these sections by `weakalign.training.harness.trainer_kwargs` at the start of every
training stage (`tests/test_params.py` builds them for every shipped params file), so TRL's own `__post_init__`
checks run too, before any model is loaded. A section keeps only the keys it was given (`values()`): TRL's
defaults apply to the rest, in one place, TRL.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.util
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

# Keys of TrainingArguments the pipeline sets for every trainer (weakalign.training.harness.trainer_kwargs), and where.
PIPELINE_SET = {
    "output_dir": "the stage's work folder under paths.checkpoints", "seed": "base.seed", "data_seed": "base.seed",
    "report_to": "dvclive (the pipeline's curves)", "use_cpu": "the hardware", "dataloader_num_workers": "0",
    "disable_tqdm": "progress bars stay on", "logging_first_step": "the first step is always logged",
    "push_to_hub": "outputs are DVC's", "hub_model_id": "outputs are DVC's", "hub_token": "outputs are DVC's",
}
# Fields of ModelConfig a `lora` section takes: the adapter's, not the model's (that is base.model) nor its task
# (the stage knows it) nor quantization.
LORA_FIELDS = ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
               "lora_modules_to_save", "use_rslora", "use_dora")
# Ranges of the fields params.yaml sets; TRL accepts any number for most of them and fails, if at all, mid-run.
BOUNDS: dict[str, dict[str, float]] = {
    "learning_rate": {"gt": 0}, "num_train_epochs": {"gt": 0}, "per_device_train_batch_size": {"ge": 1},
    "gradient_accumulation_steps": {"ge": 1}, "max_length": {"ge": 8}, "warmup_steps": {"ge": 0},
    "weight_decay": {"ge": 0}, "max_grad_norm": {"gt": 0}, "logging_steps": {"gt": 0}, "save_steps": {"gt": 0},
    "save_total_limit": {"ge": 1}, "beta": {"gt": 0}, "label_smoothing": {"ge": 0, "lt": 0.5},
    "center_rewards_coefficient": {"ge": 0}, "lora_r": {"ge": 1}, "lora_alpha": {"ge": 1},
    "lora_dropout": {"ge": 0, "lt": 1},
}


def _source(module: str) -> Path | None:
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")


class _Unknown(dict):
    """Names in TRL's annotations that are not builtins or typing (SchedulerType, ParallelismConfig ...): Any."""

    def __missing__(self, key):
        return getattr(builtins, key, None) or getattr(typing, key, None) or Any


def _annotation(text: str):
    try:
        return eval(text, {"__builtins__": {}}, _Unknown())  # noqa: S307 - TRL's own annotation text
    except Exception:  # noqa: BLE001 - an annotation we cannot read is checked by TRL itself later
        return Any


def _default(value: ast.expr | None):
    """(default, known): a field(...)'s default or default_factory lambda as a literal, else (None, False)."""
    if value is None:
        return None, False
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        kw = {k.arg: k.value for k in value.keywords}
        if "default" in kw:
            value = kw["default"]
        elif isinstance(kw.get("default_factory"), ast.Lambda):
            value = kw["default_factory"].body
        else:
            return None, False
    try:
        return ast.literal_eval(value), True
    except ValueError:
        return None, False


def _help(value: ast.expr | None) -> str:
    if isinstance(value, ast.Call):
        for k in value.keywords:
            if k.arg == "metadata" and isinstance(k.value, ast.Dict):
                for key, v in zip(k.value.keys, k.value.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "help" and isinstance(v, ast.Constant):
                        return str(v.value)
    return ""


# TRL's module of each class, and transformers' for the base every TRL config extends.
MODULES = {"TrainingArguments": "transformers.training_args", "_BaseConfig": "trl.trainer.base_config",
           "DPOConfig": "trl.trainer.dpo_config", "RewardConfig": "trl.trainer.reward_config",
           "SFTConfig": "trl.trainer.sft_config", "ModelConfig": "trl.trainer.model_config"}


@functools.cache
def dataclass_fields(name: str) -> dict[str, tuple[str, Any, bool, str]]:
    """name -> (annotation text, default, default known, help) of `name` and its bases, base first. Empty where the
    library is not installed."""
    path = _source(MODULES[name])
    if path is None or not path.is_file():
        return {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    out: dict = {}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in MODULES:
            out |= dataclass_fields(base.id)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = (ast.unparse(node.annotation), *_default(node.value), _help(node.value))
    return out


@functools.cache
def _enums() -> dict[str, tuple[str, ...]]:
    """Every enum class of transformers' trainer_utils and training_args -> its string values, from their source."""
    out = {}
    for module in ("transformers.trainer_utils", "transformers.training_args"):
        path = _source(module)
        if path is None or not path.is_file():
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith("Enum") for b in node.bases):
                out[node.name] = tuple(a.value.value for a in node.body if isinstance(a, ast.Assign)
                                       and isinstance(a.value, ast.Constant) and isinstance(a.value.value, str))
    return out


def enum_values(name: str) -> tuple[str, ...]:
    """The string values of transformers' enum `name` (SchedulerType, SaveStrategy, OptimizerNames ...); empty if
    it is none of them."""
    return _enums().get(name, ())


@functools.cache
def dpo_loss_types() -> tuple[str, ...]:
    """The loss types DPOTrainer implements: every `loss_type == "<name>"` branch of its loss, from its source
    (TRL checks the name only when the first loss is computed, after the model has loaded)."""
    path = _source("trl.trainer.dpo_trainer")
    if path is None or not path.is_file():
        return ()
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "loss_type"
                and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)
                and isinstance(node.comparators[0], ast.Constant)):
            names.add(node.comparators[0].value)
    return tuple(sorted(names))


def accepts_bool(annotation) -> bool:
    """Whether a field's type lets a boolean through as itself (bool, or a union or list holding bool, or Any)."""
    if annotation is bool or annotation is Any:
        return True
    return any(accepts_bool(a) for a in typing.get_args(annotation))


def no_bool_for_number(cls, value, info: ValidationInfo):
    """`true` is not a number: pydantic reads it as 1 for an int or float field (`n_test: true` would hold out one
    prompt, `beta: true` train with beta 1). Refused wherever the field's type has no bool in it, lists included;
    the before-validator of every params section (here and weakalign.config.params_sections._Section)."""
    if not accepts_bool(cls.model_fields[info.field_name].annotation):
        items = value if isinstance(value, list) else [value]
        if any(isinstance(x, bool) for x in items):
            raise ValueError(f"{value!r} is a boolean where a number or text is expected")
    return value


class TRLSection(BaseModel):
    """A params section holding fields of one TRL config class (`trl_class`)."""

    # allow_inf_nan=False as for every section (weakalign.config.params_sections._Section).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    trl_class: typing.ClassVar[str]

    _no_bool = field_validator("*", mode="before")(classmethod(no_bool_for_number))

    def values(self) -> dict[str, Any]:
        """The keys this section was given (in params.yaml or by `model_copy(update=...)`), for TRL's class."""
        return self.model_dump(include=self.model_fields_set)

    @model_validator(mode="after")
    def _one_precision(self):
        if getattr(self, "bf16", None) and getattr(self, "fp16", None):
            raise ValueError("fp16: bf16 is on too; pick one mixed precision (or neither, for fp32)")
        optim = getattr(self, "optim", None)
        package = optim_package(str(getattr(optim, "value", optim))) if optim else None
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(f"optim: {optim!r} needs the package {package!r}, which is not installed here "
                             "(transformers would only say so once the model has loaded and training starts)")
        return self


# transformers' optimizers that import a package of their own, imported only when training starts: (name test,
# import name), first match wins. The rest (adamw_torch, adafactor, sgd, ...) are torch's.
_OPTIM_PACKAGES = ((lambda n: n in ("adamw_torch_4bit", "adamw_torch_8bit"), "torchao"),
                   (lambda n: n == "adamw_anyprecision", "torchdistx"),
                   (lambda n: n == "adamw_torch_xla", "torch_xla"),
                   (lambda n: n == "adamw_torch_npu_fused", "torch_npu"),
                   (lambda n: n.startswith("galore_"), "galore_torch"),
                   (lambda n: n in ("lomo", "adalomo"), "lomo_optim"),
                   (lambda n: n == "grokadamw", "grokadamw"),
                   (lambda n: n.startswith("schedule_free_"), "schedulefree"),
                   (lambda n: n.startswith("apollo_"), "apollo_torch"),
                   (lambda n: n == "stable_adamw", "optimi"),
                   (lambda n: any(k in n for k in ("bnb", "8bit", "paged", "lion", "ademamix")), "bitsandbytes"))


def optim_package(name: str) -> str | None:
    """The package transformers' optimizer `name` imports, or None for torch's own."""
    return next((package for test, package in _OPTIM_PACKAGES if test(name)), None)


def _one_of(enum: str):
    """A field typed `<Enum> | str` by transformers takes the enum's values only (it converts at construction)."""
    def check(cls, value):
        if isinstance(value, str) and value not in enum_values(enum):
            raise ValueError(f"unknown value {value!r}: transformers' {enum} has {', '.join(enum_values(enum))}")
        return value
    return check


def _losses(cls, losses):
    bad = [x for x in ([losses] if isinstance(losses, str) else losses) if x not in dpo_loss_types()]
    if bad and dpo_loss_types():
        raise ValueError(f"unknown {bad}; TRL's DPOTrainer has {list(dpo_loss_types())}")
    return losses


def hint(key: str, fields: list[str]) -> str:
    """What to say after "unknown key": who sets it, or the field it looks like."""
    if key in PIPELINE_SET:
        return f" (set by the pipeline: {PIPELINE_SET[key]})"
    import difflib

    close = difflib.get_close_matches(key, fields, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def section(trl_class: str, only: tuple[str, ...] | None = None, doc: str = "") -> type[TRLSection]:
    """A pydantic model of TRL's `trl_class` (only the fields `only`, if given), with TRL's defaults."""
    fields = {}
    for name, (annotation, default, known, help_) in dataclass_fields(trl_class).items():
        if name in PIPELINE_SET or (only is not None and name not in only):
            continue
        # A default we cannot read as a literal (an enum member, a factory) is TRL's to fill: None here, and the
        # key is never passed on unless params set it (values()).
        fields[name] = (_annotation(annotation) | None if not known else _annotation(annotation),
                        Field(default if known else None, description=help_, **BOUNDS.get(name, {})))
    checks = {"loss_type": _losses} if trl_class == "DPOConfig" else {}
    for name, (annotation, *_) in dataclass_fields(trl_class).items():
        enums = [n.id for n in ast.walk(ast.parse(annotation)) if isinstance(n, ast.Name) and enum_values(n.id)]
        if name in fields and len(enums) == 1:
            checks[name] = _one_of(enums[0])
    validators = {f"_check_{k}": field_validator(k)(classmethod(f)) for k, f in checks.items() if k in fields}
    model = create_model(trl_class.removesuffix("Config") or trl_class, __base__=TRLSection, __doc__=doc,
                         __validators__=validators, **fields)
    model.trl_class = trl_class
    return model
