"""Params validation, and that params.yaml, presets and dvc.yaml agree with each other and with TRL."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weakalign.params import DPO, Params, ParamsError, load_params, parse_params


def _raw(root):
    return yaml.safe_load((root / "params.yaml").read_text())


PRESETS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "presets").glob("*.yaml"))


@pytest.mark.parametrize("name", ["params.yaml", *(f"presets/{p}" for p in PRESETS)])
def test_shipped_params_are_valid_and_complete(root, name):
    raw = yaml.safe_load((root / name).read_text())
    params = load_params(root / name)
    # Every section and key of the schema is written out, so the file documents the whole configuration.
    dumped = params.model_dump()
    assert set(raw) == set(dumped)
    for section, values in dumped.items():
        assert set(raw[section]) == set(values), f"{name}: section {section} is not complete"


def test_presets_have_the_same_keys_as_params(root):
    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and prefix + k not in ("study.set", "study.teachers"):  # free-form maps
                out |= keys(v, prefix + k + ".")
        return out

    for name in PRESETS:
        assert keys(_raw(root)) == keys(yaml.safe_load((root / "presets" / name).read_text())), name


def test_paper_presets_are_the_papers_models_on_its_data_with_a_reward_model_gold_judge(root):
    for name, dataset in (("paper-hh-opt", "Anthropic/hh-rlhf"), ("paper-tldr-opt", "CarperAI/openai_summarize_comparisons")):
        p = load_params(root / f"presets/{name}.yaml")
        assert p.base.model == "facebook/opt-1.3b" and p.train_weak.model == "facebook/opt-125m"
        assert (p.data.source, p.data.name) == ("hf", dataset)
        assert p.judge.name == "reward_model" and p.judge.model and p.sft.enabled


@pytest.mark.parametrize("path, value, expect", [
    (("align", "dpo", "lr"), 1e-4, "align.dpo.lr: unknown key"),
    (("sft", "sft", "fp16"), True, "sft.sft: Value error, fp16: bf16 is on too"),
    (("surprise",), 1, "surprise: unknown key"),
    (("train_weak", "dpo", "beta"), 0.0, "train_weak.dpo.beta"),
    (("split", "n_labeled"), 0, "split.n_labeled"),
    (("align", "sources"), ["human", "oracle"], "align.sources.1"),
    (("align", "sources"), ["weak", "weak"], "duplicates"),
    (("annotate", "tau"), -1, "annotate.tau"),
    (("align", "dpo", "loss_type"), ["sigmod"], "loss_type"),
    (("generate_pairs", "top_p"), 1.5, "generate_pairs.top_p"),
    (("split", "labeled_fraction"), 0.25, "split: Value error, set exactly one of n_labeled and labeled_fraction"),
    (("split", "labeled_fraction"), 0.0, "split.labeled_fraction: Input should be greater than 0"),
    (("align", "dpo", "save_strategy"), "sometimes", "align.dpo.save_strategy"),
    (("align", "sources"), ["human", "judge"], "align.sources: 'judge' needs its labels; set label_judge.enabled"),
    (("label_rm", "reward", "beta"), 0.1, "label_rm.reward.beta: unknown key"),
    (("label_judge", "max_length"), 4, "label_judge.max_length"),
    # Issue 17: non-finite numbers, a seed NumPy refuses, a scheduler transformers does not have, unsafe paths.
    (("align", "dpo", "learning_rate"), float("nan"), "align.dpo.learning_rate: Input should be a finite number"),
    (("annotate", "length_bias"), float("inf"), "annotate.length_bias: Input should be a finite number"),
    (("generate_pairs", "temperature"), float("inf"), "generate_pairs.temperature: Input should be a finite"),
    (("train_weak", "dpo", "num_train_epochs"), float("nan"), "train_weak.dpo.num_train_epochs: Input should be a"),
    (("base", "seed"), 2**32, "base.seed: Input should be less than or equal to 4294967295"),
    (("base", "seed"), -1, "base.seed: Input should be greater than or equal to 0"),
    (("align", "dpo", "lr_scheduler_type"), "cosinus", "align.dpo.lr_scheduler_type: Value error, unknown scheduler"),
    (("paths", "weak_labels"), "data/labels/rm.jsonl", "paths.rm_labels and paths.weak_labels are the same path"),
    (("paths", "weak_labels"), "data/labels/./rm.jsonl", "paths.rm_labels and paths.weak_labels are the same path"),
    (("paths", "checkpoints"), "models/weak/ckpt", "paths.checkpoints ('models/weak/ckpt') lies inside paths.weak_"),
    (("paths", "report"), "reports/my report.md", "paths.report: Value error, 'reports/my report.md' holds ' '"),
    (("paths", "report"), "r.md;touch pwned", "paths.report: Value error, 'r.md;touch pwned' holds ' ', ';'"),
    (("paths", "metrics"), "$(touch pwned)", "paths.metrics: Value error"),
    (("data", "path"), "data/prompts/all.jsonl", "data.path ('data/prompts/all.jsonl') is, or lies inside, paths."),
])
def test_bad_params_name_the_key(root, path, value, expect):
    raw = _raw(root)
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(ParamsError) as e:
        parse_params(raw)
    assert expect in str(e.value)


def test_params_cli_fails_fast_with_exit_2(tmp_path, root):
    bad = tmp_path / "params.yaml"
    raw = _raw(root)
    raw["holdout"]["n_tset"] = 3
    bad.write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, "-m", "weakalign.params", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "holdout.n_tset: unknown key" in res.stderr


def test_dpo_fields_are_trl_dpoconfig_fields():
    from trl import DPOConfig

    trl_fields = {f.name for f in dataclasses.fields(DPOConfig)}
    assert set(DPO.model_fields) <= trl_fields
    for name, field in DPO.model_fields.items():
        assert field.description, f"DPO.{name} has no description"


def test_reward_fields_are_trl_rewardconfig_fields():
    from trl import RewardConfig

    from weakalign.params import Reward

    assert set(Reward.model_fields) <= {f.name for f in dataclasses.fields(RewardConfig)}
    for name, field in Reward.model_fields.items():
        assert field.description, f"Reward.{name} has no description"


def test_sft_fields_are_trl_sftconfig_fields():
    from trl import SFTConfig

    from weakalign.params import SFTFields

    assert set(SFTFields.model_fields) <= {f.name for f in dataclasses.fields(SFTConfig)}
    for name, field in SFTFields.model_fields.items():
        assert field.description, f"SFTFields.{name} has no description"


def test_lora_fields_are_trl_modelconfig_fields():
    from trl import ModelConfig

    from weakalign.params import Lora

    assert set(Lora.model_fields) <= {f.name for f in dataclasses.fields(ModelConfig)}


def test_every_schema_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, Params.__mro__[1]):
                yield from walk(ann)
            elif model.__name__ != "Paths" and model.__name__ != "Params":
                yield model.__name__, name, field.description

    missing = [(m, n) for m, n, d in walk(Params) if not d]
    assert not missing


def test_every_dvc_reference_resolves_and_every_path_is_used(root):
    params = _raw(root)
    text = (root / "dvc.yaml").read_text()
    refs = set(re.findall(r"\$\{([^}]+)\}", text)) - {"item"}
    for ref in refs:
        node = params
        for k in ref.split("."):
            assert isinstance(node, dict) and k in node, f"dvc.yaml: ${{{ref}}} does not resolve in params.yaml"
            node = node[k]
    assert {f"paths.{k}" for k in params["paths"]} <= refs, "a path in params.yaml is not used by dvc.yaml"
    # Each stage's `params:` entries name real keys.
    dvc = yaml.safe_load(text)
    for name, stage in dvc["stages"].items():
        stage = stage.get("do", stage)
        for entry in stage.get("params", []):
            node = params
            for k in entry.split("."):
                assert k in node, f"stage {name}: params entry {entry!r} is not in params.yaml"
                node = node[k]


def test_stages_declare_no_paths_of_their_own(root):
    """Paths live in params.yaml only: stage scripts take them as arguments and hold no defaults."""
    params = _raw(root)
    for script in (root / "stages").glob("*.py"):
        code = script.read_text()
        body = code.split('"""', 2)[-1]  # skip the docstring, which shows the command line
        for path in params["paths"].values():
            assert f'"{path}' not in body and f"'{path}" not in body, f"{script.name} hard-codes {path}"


def test_each_stage_script_has_a_main_and_a_command_line_in_its_docstring(root):
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    for name in dvc["stages"]:
        script = root / "stages" / f"{name}.py"
        code = script.read_text()
        assert "def main(" in code
        assert f"python stages/{name}.py" in code.split('"""')[1]


def test_weak_model_reference():
    from weakalign.params import TrainWeak

    assert TrainWeak().model_ref("models/base") == "models/base"
    assert TrainWeak(model="facebook/opt-125m").model_ref("models/base") == "facebook/opt-125m"


def test_no_params_key_can_hold_a_credential():
    """Tokens come from the environment (HF_TOKEN, cloud credentials), never from params.yaml, which is in git."""
    from pydantic import BaseModel

    def names(model: type[BaseModel], prefix: str = ""):
        for name, field in model.model_fields.items():
            yield prefix + name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from names(field.annotation, prefix + name + ".")

    keys = list(names(Params))
    assert len(keys) > 50
    suspicious = [k for k in keys if re.search(r"token|secret|password|credential|api_key", k) and
                  not k.endswith("max_new_tokens")]
    assert not suspicious


def test_labeled_fraction_sizes_d_l():
    from weakalign.params import Split

    assert Split(n_labeled=None, labeled_fraction=0.125).labeled_size(240) == 30
    assert Split(n_labeled=None, labeled_fraction=0.001).labeled_size(240) == 1  # never an empty D_l
    assert Split(n_labeled=64).labeled_size(240) == 64


@pytest.mark.parametrize("judge", ["vader", "tone"])
def test_sandbox_judges_need_sandbox_data(root, judge):
    raw = _raw(root)
    raw["judge"]["name"] = judge
    assert parse_params(raw).judge.name == judge
    raw["data"]["source"] = "jsonl"
    with pytest.raises(ParamsError) as e:
        parse_params(raw)
    assert f"judge.name: '{judge}' scores the sandbox's review continuations, not data.source 'jsonl'" in str(e.value)


def test_tone_preset_is_params_yaml_with_the_tone_task(root):
    """presets/tone.yaml differs from params.yaml only in the judge and its prompts (keep them in step)."""
    preset, raw = yaml.safe_load((root / "presets/tone.yaml").read_text()), _raw(root)
    assert (preset["judge"]["name"], preset["data"]["path"]) == ("tone", "data/raw/tone_prompts.jsonl")
    preset["judge"]["name"], preset["data"]["path"] = raw["judge"]["name"], raw["data"]["path"]
    assert preset == raw


def test_params_command_has_help_and_checks_several_files(root):
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "weakalign.params", *a], capture_output=True, text=True,
                                    cwd=root)
    help_ = run("--help")
    assert help_.returncode == 0 and "usage: python -m weakalign.params" in help_.stdout
    both = run("params.yaml", "presets/tiny.yaml")
    assert both.returncode == 0 and both.stdout.splitlines() == ["params.yaml: ok", "presets/tiny.yaml: ok"]
    missing = run("params.yaml", "no-such.yaml")
    assert missing.returncode == 2 and "no-such.yaml" in missing.stderr


def test_every_stage_depends_on_the_modules_its_code_imports(root):
    """dvc.yaml's code deps are the import closure of each stage script (scripts/stage_deps.py), so a change to
    any module a stage can run re-runs it; `python scripts/stage_deps.py --write` mends a missing one."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(root / "scripts/stage_deps.py")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]


def test_params_with_a_duplicate_key_are_refused_naming_the_line(tmp_path):
    # yaml.safe_load keeps the last value; DVC refuses the file; the stages and the checker must agree with DVC.
    p = tmp_path / "params.yaml"
    p.write_text("base:\n  seed: 0\n  seed: 1\n")
    with pytest.raises(ParamsError, match=r"params.yaml:3: not valid YAML \(duplicate key 'seed' \(first on line 2\)\)"):
        load_params(p)
    with pytest.raises(ParamsError, match="is a directory, not a file"):
        load_params(tmp_path)


def test_the_scheduler_names_are_transformers_own():
    from transformers.trainer_utils import SchedulerType

    from weakalign.params import _scheduler_names

    assert _scheduler_names() == tuple(s.value for s in SchedulerType)
