"""Params validation, and that params.yaml, presets and dvc.yaml agree with each other and with TRL."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from weakalign.config.params import Params, ParamsError, compose, load_params, parse_params, read_yaml


def _raw(root):
    return yaml.safe_load((root / "params.yaml").read_text())


PRESETS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "presets").glob("*.yaml"))


@pytest.mark.parametrize("name", ["params.yaml", *(f"presets/{p}" for p in PRESETS)])
def test_shipped_params_are_valid_and_complete(root, name):
    raw = compose(root / name)  # a preset as the stages see it: its overrides on params.yaml
    params = load_params(root / name)
    # Every section and key of the schema is written out, so the file documents the whole configuration; a TRL
    # section (weakalign.config.trl_config) holds the TRL fields it sets, TRL's defaults apply to the rest.
    from weakalign.config.trl_config import TRLSection

    def dump(model):
        if isinstance(model, TRLSection):
            return model.values()
        return {k: dump(v) if isinstance(v, BaseModel) else v for k, v in model if k}

    dumped = dump(params)
    assert set(raw) == set(dumped)
    for section, values in dumped.items():
        assert set(raw[section]) == set(values), f"{name}: section {section} is not complete"
        for key, value in values.items():
            if isinstance(value, dict) and key not in ("set", "teachers", "columns"):
                assert set(raw[section][key]) == set(value), f"{name}: {section}.{key} is not complete"


def test_presets_hold_only_what_differs_from_what_they_extend(root):
    """Each default has one home, params.yaml: a preset names the file it extends and sets only keys whose value
    differs there (a key set to the value it already has would be a second copy of a default), in at most 40
    lines. Merging follows the schema: sections merge key by key, values (lists, free maps) are replaced whole."""
    from weakalign.config.params import EXTENDS, merge

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v and prefix + k not in ("study.set", "study.teachers"):  # free-form maps
                yield from leaves(v, prefix + k + ".")
            else:
                yield prefix + k, v

    def at(d, dotted):
        for k in dotted.split("."):
            d = d[k]
        return d

    for name in PRESETS:
        path = root / "presets" / name
        raw = read_yaml(path)
        assert len(path.read_text().splitlines()) <= 40, name
        parent = compose(path.parent / raw.pop(EXTENDS))
        assert compose(path) == merge(Params, parent, raw)
        for key, value in leaves(raw):
            assert at(parent, key) != value, f"presets/{name}: {key} is already {value!r} where it extends"


def test_paper_presets_are_the_papers_models_on_its_data_with_a_reward_model_gold_judge(root):
    for name, dataset in (("paper-hh-opt", "Anthropic/hh-rlhf"), ("paper-tldr-opt", "CarperAI/openai_summarize_comparisons")):
        p = load_params(root / f"presets/{name}.yaml")
        assert p.base.model == "facebook/opt-1.3b" and p.train_weak.model == "facebook/opt-125m"
        assert (p.data.source, p.data.name) == ("hf", dataset)
        assert p.judge.name == "reward_model" and p.judge.model and p.sft.enabled


@pytest.mark.parametrize("path, value, expect", [
    (("align", "dpo", "lr"), 1e-4, "align.dpo.lr: unknown key"),
    (("paths", "report"), "README.md", "paths.report: Value error, 'README.md' is (or lies in) the project's own"),
    (("paths", "feedback"), "../feedback", "paths.feedback: Value error, '../feedback' leaves the repository"),
    (("paths", "feedback"), "/home/me/feedback", "paths.feedback: Value error, '/home/me/feedback' leaves the"),
    (("paths", "targets"), "data/../../x", "paths.targets: Value error, 'data/../../x' leaves the repository"),
    (("paths", "metrics"), "src/weakalign", "paths.metrics: Value error, 'src/weakalign' is (or lies in)"),
    (("paths", "plots"), "./", "paths.plots: Value error, './' is (or lies in)"),
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
    (("align", "dpo", "lr_scheduler_type"), "cosinus",
     "align.dpo.lr_scheduler_type: Value error, unknown value 'cosinus': transformers' SchedulerType has"),
    (("paths", "weak_labels"), "data/labels/rm", "paths.rm_labels and paths.weak_labels are the same path"),
    (("paths", "weak_labels"), "data/labels/./rm", "paths.rm_labels and paths.weak_labels are the same path"),
    (("paths", "checkpoints"), "models/weak/ckpt", "paths.checkpoints ('models/weak/ckpt') lies inside paths.weak_"),
    (("paths", "report"), "reports/my report.md", "paths.report: Value error, 'reports/my report.md' holds ' '"),
    (("paths", "report"), "r.md;touch pwned", "paths.report: Value error, 'r.md;touch pwned' holds ' ', ';'"),
    (("paths", "metrics"), "$(touch pwned)", "paths.metrics: Value error"),
    (("data", "path"), "data/prompts/all.jsonl", "data.path ('data/prompts/all.jsonl') is, or lies inside, paths."),
    (("generate_pairs", "styles"), ["warm"], "generate_pairs.styles: Value error, needs at least two"),
    (("generate_pairs", "styles"), ["", "warm", "warm"], "generate_pairs.styles: Value error, duplicates"),
    (("generate_pairs", "styles"), ["", "a\x1b[2Jb"], "generate_pairs.styles: Value error, 'a\\x1b[2Jb' must be"),
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
    res = subprocess.run([sys.executable, "-m", "weakalign.config.params", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "holdout.n_tset: unknown key" in res.stderr


def test_every_schema_field_is_documented():
    from weakalign.config.trl_config import TRLSection

    def walk(model):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, TRLSection):
                continue  # TRL's fields, documented by TRL (test_trl_sections_are_trls_own_classes)
            if isinstance(ann, type) and issubclass(ann, Params.__mro__[1]):
                yield from walk(ann)
            elif model.__name__ != "Paths" and model.__name__ != "Params":
                yield model.__name__, name, field.description

    missing = [(m, n) for m, n, d in walk(Params) if not d]
    assert not missing


def test_every_dvc_reference_resolves_and_every_path_is_used(root):
    params = _raw(root)
    text = (root / "dvc.yaml").read_text()
    # dvc.yaml's deps and outs, and the stages' docstring commands (their arguments: weakalign.cli resolves them)
    docs = "".join(ast.get_docstring(ast.parse(s.read_text()), clean=False) for s in (root / "stages").glob("*.py"))
    refs = set(re.findall(r"\$\{([^}]+)\}", text + docs)) - {"item"}
    for ref in refs:
        node = params
        for k in ref.split("."):
            assert isinstance(node, dict) and k in node, f"dvc.yaml: ${{{ref}}} does not resolve in params.yaml"
            node = node[k]
    assert {f"paths.{k}" for k in params["paths"]} <= refs, "a path in params.yaml is used by no stage"
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


def test_the_headline_is_the_one_declared_metric_and_each_stage_outputs_its_results_file(root):
    """`dvc metrics show` shows every declared metrics file as one row over the union of their keys: with each
    stage's results file declared it was 4,551 columns wide (and 13,249 with the committed study's). So the report's
    metrics/headline.json is the only metric, and each stage's `metrics/<stage>.json` is a plain out of it, beside
    its `.info.json`: cached (an uncached plain out takes a stage out of DVC's run cache, tests/test_cli.py), in git
    only for the git-tracked `compare`. metrics/study.json is `make study`'s, no stage's. A folder (as
    `metrics/align` once was) would mix the `.info.json` bookkeeping into results: each `align@` stage names its file."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    assert "metrics" not in dvc
    stages = {n: s.get("do", s) for n, s in dvc["stages"].items()}
    declared = [m for s in stages.values() for m in (s.get("metrics") or [])]
    assert declared == [{"${paths.metrics}/headline.json": {"cache": False, "persist": True}}]
    results = {}
    for name, spec in stages.items():
        for out in spec.get("outs", []):
            path, opts = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if path.startswith("${paths.metrics}/") and not path.endswith(".info.json"):
                results[name] = path
                assert opts.get("cache", True) == (name != "compare"), (name, path, opts)
                assert path.removesuffix(".json") + ".info.json" in {next(iter(o)) if isinstance(o, dict) else o
                                                                       for o in spec["outs"]}, (name, path)
    assert len(results) == 11 and results["align"] == "${paths.metrics}/align/${item}.json", results


def test_weak_model_reference(section):
    assert section("train_weak", model="base").model_ref("models/base") == "models/base"
    assert section("train_weak", model="base@layers=8").model_ref("models/base") == "models/base@layers=8"
    assert section("train_weak", model="facebook/opt-125m").model_ref("models/base") == "facebook/opt-125m"


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
    # TRL's own token fields name tokens of text (eos_token, pad_token, ..._tokens_...), not credentials; its
    # hub_token is refused as pipeline-set (weakalign.config.trl_config.PIPELINE_SET).
    suspicious = [k for k in keys if re.search(r"hub_token|secret|password|credential|api_key|auth", k)]
    assert not suspicious


def test_labeled_fraction_sizes_d_l(section):
    assert section("split", n_labeled=None, labeled_fraction=0.125).labeled_size(240) == 30
    assert section("split", n_labeled=None, labeled_fraction=0.001).labeled_size(240) == 1  # never an empty D_l
    assert section("split", n_labeled=64, labeled_fraction=None).labeled_size(240) == 64


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
    """presets/tone.yaml differs from params.yaml only in the judge, its prompts, its study (the calibration
    check over at least three seeds) and the sandbox design that study ran on (keep the rest in step)."""
    preset, raw = compose(root / "presets/tone.yaml"), _raw(root)
    assert (preset["judge"]["name"], preset["data"]["path"]) == ("tone", "data/raw/tone_prompts.jsonl")
    assert {"gold", "random", "flipped"} <= set(preset["study"]["sources"]) and len(preset["study"]["seeds"]) >= 3
    preset["judge"]["name"], preset["data"]["path"] = raw["judge"]["name"], raw["data"]["path"]
    preset["study"] = raw["study"]
    assert (preset["generate_pairs"]["styles"], preset["holdout"]["n_train"], preset["split"]["n_labeled"],
            preset["split"]["n_unlabeled"], preset["train_weak"]["dpo"]["num_train_epochs"]) == ([], 160, 64, 96, 2)
    preset["generate_pairs"]["styles"] = raw["generate_pairs"]["styles"]
    preset["holdout"]["n_train"] = raw["holdout"]["n_train"]
    preset["split"] = raw["split"]
    preset["train_weak"]["dpo"]["num_train_epochs"] = raw["train_weak"]["dpo"]["num_train_epochs"]
    assert preset == raw


def test_full_ft_preset_is_params_yaml_with_fully_fine_tuned_targets(root):
    """presets/full-ft.yaml is the default before 2026-12-02 (full fine-tuning at 3e-5), params.yaml that with LoRA
    targets (the design whose study passed the calibration checks): keep the two in step, since their studies are
    read as the same pipeline with one design change."""
    preset, raw = compose(root / "presets/full-ft.yaml"), _raw(root)
    assert raw["align"]["lora"]["use_peft"] and raw["align"]["dpo"]["learning_rate"] == 3e-4
    assert not preset["align"]["lora"]["use_peft"] and preset["align"]["dpo"]["learning_rate"] == 3e-5
    preset["align"]["dpo"]["learning_rate"] = raw["align"]["dpo"]["learning_rate"]
    preset["align"]["lora"] = raw["align"]["lora"]
    assert preset == raw


def test_params_command_has_help_and_checks_several_files(root):
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "weakalign.config.params", *a], capture_output=True,
                                    text=True, cwd=root)
    help_ = run("--help")
    assert help_.returncode == 0 and "usage: weakalign check" in help_.stdout
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
    with pytest.raises(ParamsError, match=r'params.yaml:3: not valid YAML \(found duplicate key "seed" with value "1" '
                                          r'\(original value: "0"\)\)'):
        load_params(p)
    with pytest.raises(ParamsError, match="is a directory, not a file"):
        load_params(tmp_path)


def test_the_enum_values_are_transformers_own():
    from transformers.trainer_utils import SaveStrategy, SchedulerType
    from transformers.training_args import OptimizerNames

    from weakalign.config.trl_config import enum_values

    for enum in (SchedulerType, SaveStrategy, OptimizerNames):
        assert enum_values(enum.__name__) == tuple(s.value for s in enum)


def test_trl_sections_are_trls_own_classes():
    """Each TRL section holds exactly the fields of TRL's class (less those the pipeline sets), with TRL's
    defaults, read from TRL's source; the DPO loss types are the ones DPOTrainer implements."""
    import dataclasses

    from trl import DPOConfig, ModelConfig, RewardConfig, SFTConfig

    from weakalign.config.params import DPO, Lora, Reward, SFTFields
    from weakalign.config.trl_config import LORA_FIELDS, PIPELINE_SET, dpo_loss_types

    for ours, theirs in ((DPO, DPOConfig), (Reward, RewardConfig), (SFTFields, SFTConfig)):
        fields = {f.name: f for f in dataclasses.fields(theirs) if f.init}
        assert set(ours.model_fields) == set(fields) - set(PIPELINE_SET), theirs.__name__
        for name, f in ours.model_fields.items():
            if f.default is not None and fields[name].default is not dataclasses.MISSING:
                assert f.default == fields[name].default, (theirs.__name__, name)
    assert set(Lora.model_fields) == set(LORA_FIELDS) <= {f.name for f in dataclasses.fields(ModelConfig)}
    assert Lora().lora_r == ModelConfig().lora_r
    assert {"sigmoid", "ipo", "hinge", "robust", "sigmoid_norm"} <= set(dpo_loss_types())
    with pytest.raises(ParamsError, match="did you mean learning_rate"):
        parse_params(_set(("align", "dpo", "learnig_rate"), 1e-4))
    with pytest.raises(ParamsError, match="output_dir: unknown key .set by the pipeline"):
        parse_params(_set(("align", "dpo", "output_dir"), "x"))


def _set(path, value):
    raw = _raw(Path(__file__).resolve().parents[1])
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize("path", ["params.yaml", *(f"presets/{p}" for p in PRESETS)])
def test_shipped_trl_sections_build_trls_classes(path, tmp_path):
    """TRL's own __post_init__ accepts every TRL section of every shipped params file (the stages build the same
    classes from the same sections before training)."""
    from trl import DPOConfig, ModelConfig, RewardConfig, SFTConfig

    from weakalign.training.harness import trainer_kwargs

    p = load_params(Path(__file__).parents[1] / path)
    for cfg, cls in ((p.train_weak.dpo, DPOConfig), (p.align.dpo, DPOConfig), (p.label_rm.reward, RewardConfig),
                     (p.sft.sft, SFTConfig)):
        built = cls(**trainer_kwargs(cfg, 0, str(tmp_path)))
        assert {k: getattr(built, k) for k in cfg.values() if k not in ("bf16", "fp16", "loss_type")} == \
            {k: v for k, v in cfg.values().items() if k not in ("bf16", "fp16", "loss_type")}
    for lora in (p.train_weak.lora, p.align.lora, p.label_rm.lora, p.sft.lora):
        ModelConfig(**lora.values())


def test_the_defaults_have_one_home_params_yaml(root, tmp_path):
    """The schema of the project's own sections holds types and checks, no default: params.yaml is the one home of
    the defaults (TRL sections keep TRL's own, their home). So every such key is required, params.yaml holds each,
    and a file that leaves one out fails naming it, while a preset takes it from params.yaml with `extends`."""
    from weakalign.config.trl_config import TRLSection

    def walk(cls, node, prefix=""):
        for name, f in cls.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, TRLSection):
                assert name in node, prefix + name  # the section itself is in the file; its fields default to TRL
                continue
            yield prefix + name, f.is_required(), name in node
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from walk(ann, node[name], prefix + name + ".")

    keys = list(walk(Params, _raw(root)))
    assert len(keys) > 80
    assert [k for k, required, _ in keys if not required] == []
    assert [k for k, _, there in keys if not there] == []
    raw = _raw(root)
    del raw["compare"]["margin_bins"]
    with pytest.raises(ParamsError, match=r"(?m)^  compare\.margin_bins: missing: every key's default is in params\.yaml"):
        parse_params(raw, "f.yaml")
    (tmp_path / "p.yaml").write_text("extends: " + str(root / "params.yaml") + "\ncompare: {margin_bins: 3}\n")
    assert load_params(tmp_path / "p.yaml").compare.margin_bins == 3


def _params_reads(tree: ast.AST, name: str) -> set[str]:
    """The attribute chains read from the variable `name` (params.align.dpo.beta -> "align.dpo.beta"), longest only."""
    found = set()
    for node in ast.walk(tree):
        parts, n = [], node
        while isinstance(n, ast.Attribute):
            parts.append(n.attr)
            n = n.value
        if parts and isinstance(n, ast.Name) and n.id == name:
            found.add(".".join(reversed(parts)))
    return {c for c in found if not any(o.startswith(c + ".") for o in found)}


def _resolve(chain: str) -> set[str]:
    """A chain through a Params method or property (params.target_start, params.train_weak.model_ref) stands for
    the fields that method reads (its `self.` chains, read from its source); a field chain stands for itself."""
    import inspect
    import textwrap

    from pydantic import BaseModel

    cls, prefix = Params, []
    for i, part in enumerate(chain.split(".")):
        if part in cls.model_fields:
            prefix.append(part)
            ann = cls.model_fields[part].annotation
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                return {".".join(prefix)}  # a leaf field: reading below it reads it
            cls = ann
            continue
        if hasattr(BaseModel, part):  # model_dump(), model_copy(): the whole section
            return {".".join(prefix)}
        member = inspect.getattr_static(cls, part)
        func = member.fget if isinstance(member, property) else member
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        return set().union(*(_resolve(".".join([*prefix, c])) for c in _params_reads(tree, "self"))) or {".".join(prefix)}
    return {".".join(prefix)}


def _stage_params(root: Path) -> list[tuple[str, Path, list[str]]]:
    """(stage name, its script, the params keys dvc.yaml lists for it) of every stage."""
    out = []
    for name, spec in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items():
        spec = spec.get("do", spec)
        script = root / re.search(r"stages/\w+\.py", spec["cmd"]).group(0)
        out.append((name, script, [p if isinstance(p, str) else next(iter(p)) for p in spec.get("params", [])]))
    return out


def _lists(declared: list[str], key: str) -> bool:
    """Whether a stage's params list covers `key` (the key itself or a section above it)."""
    return any(key == d or key.startswith(d + ".") for d in declared)


def test_every_params_key_a_stage_reads_is_in_its_dvc_params(root):
    """DVC re-runs a stage when one of its `params` keys changes, and only then: a key its script reads but
    dvc.yaml does not list leaves a stale result when it changes (found: base.trust_remote_code, read by sft,
    train_weak, label_weak and label_rm to load their models, declared only by base_model)."""
    for name, script, declared in _stage_params(root):
        reads = set().union(*(_resolve(c) for c in _params_reads(ast.parse(script.read_text()), "params")))
        for key in sorted(reads):
            assert _lists(declared, key), \
                f"dvc.yaml stage {name}: stages/{script.name} reads params {key}, not in its params {declared}"


def test_only_a_stage_that_trains_under_accelerate_declares_how_many_processes(root):
    """base.num_processes and base.accelerate_config change how a training stage launches (cli.run relaunches it
    under `accelerate launch` when its `stage(..., distributed=...)` says it trains), nothing else: a stage that
    never launches must not list them, or switching to two GPUs re-runs it (base_model listed all of `base`)."""
    for name, script, declared in _stage_params(root):
        launches = "distributed=" in script.read_text()
        for key in ("base.num_processes", "base.accelerate_config"):
            assert _lists(declared, key) == launches, \
                f"dvc.yaml stage {name}: {key} {'missing' if launches else 'listed'}"


def test_styles_default_is_the_sandboxs_and_unused_with_real_data(root):
    """The default pool is styled (the pilot's design); with real data the key is unused, whatever it holds, so
    the default params.yaml with its data source switched to real data validates (no stage reads a pool never
    drawn)."""
    raw = compose(root / "presets/hh-local.yaml")
    assert parse_params(raw).generate_pairs.styles == []
    raw["generate_pairs"]["styles"] = ["", "Be brief."]
    assert parse_params(raw).generate_pairs.styles == []
    assert len(parse_params(_raw(root)).generate_pairs.styles) == 3


def test_params_are_read_as_dvc_reads_them(tmp_path, root):
    """One YAML reader with DVC's semantics (YAML 1.2, ruamel): `010` is 10 and `yes` a string for both, where
    PyYAML read 8 and true, so DVC's run cache recorded 10 and served the 8-prompt holdout to a later `n_test: 10`;
    a merge key `<<:` is read as DVC reads it; every shipped params file reads the same through both."""
    from dvc.utils.serialize import parse_yaml

    from weakalign.config.params import read_yaml

    raw = _raw(root)
    text = (root / "params.yaml").read_text().replace("  n_test: 128", "  n_test: 010", 1)
    assert "n_test: 010" in text
    p = tmp_path / "params.yaml"
    p.write_text(text)
    assert load_params(p).holdout.n_test == 10 == parse_yaml(text, str(p))["holdout"]["n_test"]
    merged = "base: &b\n  seed: 3\n  model: tiny-random\nother:\n  <<: *b\n  seed: 4\n"
    p.write_text(merged)
    assert read_yaml(p) == parse_yaml(merged, str(p)) == {"base": {"seed": 3, "model": "tiny-random"},
                                                          "other": {"seed": 4, "model": "tiny-random"}}
    for f in [root / "params.yaml", *sorted((root / "presets").glob("*.yaml"))]:
        assert read_yaml(f) == parse_yaml(f.read_text(), str(f)), f
    assert raw["holdout"]["n_test"] == 128


def test_alias_bombs_and_self_referencing_aliases_are_refused_at_once(tmp_path):
    """A few hundred bytes of nested aliases that expand to 10**9 values (in study.set, or in align.sources where
    the check used to hang): refused before anything expands them, naming the file; an alias inside itself too."""
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p = tmp_path / "params.yaml"
    p.write_text("\n".join(lines) + "\nstudy:\n  set: {x: *a8}\n")
    t0 = time.perf_counter()
    with pytest.raises(ParamsError, match=r"params.yaml: its aliases expand to more than 100,000 values"):
        load_params(p)
    assert time.perf_counter() - t0 < 5
    p.write_text("align: &a\n  sources: [*a]\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid params \(line 1: an alias that contains itself\)"):
        load_params(p)


@pytest.mark.parametrize("key, value", [(("holdout", "n_test"), True), (("align", "dpo", "beta"), True),
                                         (("study", "seeds"), [0, True]), (("split", "n_labeled"), False)])
def test_a_boolean_is_not_a_number(root, key, value):
    raw = _raw(root)
    node = raw
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ParamsError, match=rf"{'.'.join(key)}: Value error, .* is a boolean where a number"):
        parse_params(raw)


def test_late_failures_are_caught_when_params_load(root, tmp_path, monkeypatch):
    """What used to pass the check and fail once a stage had loaded its model: an optimizer whose package is not
    installed, an accelerate config file that is not there, a Hub id that is not cached while offline (52 s of
    retries before; `check_here`, which every stage and `weakalign check` run). Each in well under a second,
    naming the key."""
    import time

    for key, value, expect in [
        (("align", "dpo", "optim"), "adamw_bnb_8bit", "align.dpo: Value error, optim: 'adamw_bnb_8bit' needs the "
                                                       "package 'bitsandbytes'"),
        (("base", "accelerate_config"), "presets/accelerate/nope.yaml", "base.accelerate_config: Value error, "
                                                                          "'presets/accelerate/nope.yaml': no such file"),
    ]:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        raw = _raw(root)
        node = raw[key[0]] if len(key) == 2 else raw[key[0]][key[1]]
        node[key[-1]] = value
        t0 = time.perf_counter()
        with pytest.raises(ParamsError, match=re.escape(expect)):
            parse_params(raw)
        assert time.perf_counter() - t0 < 1, key
    # Offline, a Hub id missing from the local cache: the file is valid, but it cannot run here.
    raw = _raw(root)
    raw["base"]["model"], raw["train_weak"]["model"] = "nobody/no-such-model", "nobody/other@layers=2"
    t0 = time.perf_counter()
    with pytest.raises(ParamsError, match=re.escape(
            "params: cannot run here\n  base.model: 'nobody/no-such-model' is not in the local Hugging Face cache, "
            "and HF_HUB_OFFLINE is set")) as e:
        parse_params(raw).check_here()
    assert "train_weak.model: 'nobody/other' is not in the local" in str(e.value)
    assert time.perf_counter() - t0 < 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    parse_params(raw).check_here()  # online it may be downloaded
    monkeypatch.chdir(root)
    raw = _raw(root)
    raw["align"]["dpo"]["optim"] = "adamw_torch"
    raw["base"]["accelerate_config"] = "presets/accelerate/deepspeed-zero2.yaml"
    assert parse_params(raw).base.accelerate_config.endswith("zero2.yaml")


def test_a_fifo_as_the_data_file_is_refused_before_dvc_would_block_on_it(root, tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    os.mkfifo("prompts.jsonl")
    raw = _raw(root)
    raw["data"]["path"] = "prompts.jsonl"
    with pytest.raises(ParamsError, match=r"data.path: Value error, 'prompts.jsonl' is not a regular file"):
        parse_params(raw)


def test_a_local_model_must_lie_under_local_models(root, tmp_path, monkeypatch):
    """A local model directory outside local_models/ (the folder DVC hashes as a dep of every stage that loads a
    model from params), or a link from there to one outside, is refused by `check_here`, naming the key; one
    inside, a pruned one inside, a Hub id and the embedded model pass. tests/test_pipeline.py drives it through
    `dvc repro`."""
    monkeypatch.chdir(tmp_path)
    for d in ("outside/m", "local_models/m"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "config.json").write_text("{}")
    (tmp_path / "local_models/link").symlink_to(tmp_path / "outside/m", target_is_directory=True)
    for key, ref in [("base.model", "outside/m"), ("train_weak.model", str(tmp_path / "outside/m@layers=2")),
                     ("base.model", "local_models/link"), ("base.model", "local_models/../outside/m")]:
        raw = _raw(root)
        section, field = key.split(".")
        raw[section][field] = ref
        with pytest.raises(ParamsError, match=re.escape(f"{key}: local model directory {ref.split('@')[0]!r} "
                                                        "lies outside local_models/")):
            parse_params(raw).check_here()
    for ref in ("local_models/m", str(tmp_path / "local_models/m"), "local_models/m@layers=1", "embedded:smollm2"):
        raw = _raw(root)
        raw["base"]["model"] = ref
        parse_params(raw).check_here()
