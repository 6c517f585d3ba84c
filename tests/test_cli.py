"""Every stage's `--help` answers at once, shows the flags of the command in its docstring, and loads no heavy library.

torch, transformers, trl and datasets take 5-10 s to import, so the stages import them inside `main`
(weakalign.cli). The test checks what `--help` imports rather than how long it takes, which a busy machine
would make flaky.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weakalign.config.params import compose

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted((ROOT / "stages").glob("*.py"))
HEAVY = ("torch", "transformers", "trl", "datasets")

# `python SCRIPT --help`, as runpy runs a script, then one last line: the exit code and the heavy modules loaded.
PROBE = """
import json, os, runpy, sys
script = sys.argv[1]
sys.argv, sys.path[0] = [script, "--help"], os.path.dirname(os.path.abspath(script))
try:
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print("\\n" + json.dumps({"exit": code, "heavy": heavy}))
"""


def _command_flags(script: Path) -> list[str]:
    from weakalign.cli import command_flags

    return command_flags(ast.get_docstring(ast.parse(script.read_text()), clean=False), script.stem)


@pytest.mark.parametrize("script", STAGES, ids=lambda s: s.stem)
def test_help_shows_the_flags_and_loads_no_heavy_library(script):
    res = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", str(script)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    text, _, last = res.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(last)
    assert result["exit"] == 0, res.stderr[-3000:]
    usage = text.split("\n\n")[0]  # argparse's usage block, before the description (the docstring itself)
    assert usage.startswith(f"usage: python stages/{script.name} "), usage  # what the user types
    assert f"`dvc repro {script.stem}" in text and "`make repro`" in text
    shown = set(re.findall(r"--[\w-]+", usage))
    assert set(_command_flags(script)) | {"--params"} == shown, "the parser's flags differ from the docstring's command"
    assert not result["heavy"], f"{script.name} --help imports {result['heavy'][:5]}: import them inside main()"


def test_dvc_yaml_runs_each_stage_with_no_value_from_params_in_its_shell_command():
    """DVC runs `cmd` through a shell after interpolating params into it: a path holding `$(...)` ran as a command
    before any check. So each cmd is `python stages/<name>.py` alone; the stage resolves its arguments from its
    docstring's command, whose every flag appears once."""
    import yaml

    from weakalign.cli import command_flags

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    seen = set()
    for name, spec in stages.items():
        cmd = spec.get("do", spec)["cmd"]
        script = re.fullmatch(r"python stages/(\w+)\.py", cmd)
        assert script, f"dvc.yaml stage {name}: {cmd!r} passes more than the script"
        seen.add(script.group(1))
        doc = ast.get_docstring(ast.parse((ROOT / "stages" / f"{script.group(1)}.py").read_text()), clean=False)
        flags = re.findall(r"--[\w-]+", re.search(rf"python stages/{script.group(1)}\.py(?:.*\\\n)*.*", doc).group(0))
        assert flags == command_flags(doc, script.group(1)) and len(flags) == len(set(flags)), name
    assert seen == {s.stem for s in STAGES}, "a stage script that dvc.yaml never runs"


def test_a_path_holding_shell_syntax_is_never_run(tmp_path):
    """`paths.base_model: models/base$(touch PWNED)` through the real `dvc repro` of the stage that writes it: the
    shell sees only `python stages/base_model.py`, so nothing runs, and params' own check refuses the value."""
    import yaml

    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / f, tmp_path / f)
    for folder in ("stages", "presets", "src", "local_models"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = compose(ROOT / "presets/tiny.yaml")
    params["paths"]["base_model"] = "models/base$(touch PWNED)"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path / "src")}
    res = subprocess.run([dvc, "repro", "base_model"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=300)
    assert not (tmp_path / "PWNED").exists() and not list(tmp_path.rglob("PWNED"))
    assert res.returncode != 0 and "paths.base_model: Value error, 'models/base$(touch PWNED)' holds" in res.stderr + res.stdout


# Stages whose git-tracked outputs are cheap to remake (seconds) and byte-deterministic, so that skipping DVC's run
# cache for them costs seconds and changes no downstream hash: compare's agreement plot data, the report.
GIT_TRACKED_OUTS = {"compare", "report"}


def test_every_costly_stage_can_be_served_by_the_run_cache():
    """DVC saves and restores a stage through its run cache only if every plain out is cached: one `cache: false`
    out that is not a metric or plot switches it off (dvc.stage.Stage.run: `no_cache_outs`). That is how the
    `*.info.json` bookkeeping files and dvclive folders, once declared `cache: false`, made every study run and
    every `dvc exp run` recompute the pairs, annotators and weak labels it shared with an earlier run."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        if name in GIT_TRACKED_OUTS:
            continue
        for out in spec.get("do", spec).get("outs", []):
            if isinstance(out, dict):
                (path, opts), = out.items()
                assert opts.get("cache", True), f"dvc.yaml stage {name}: out {path} has cache: false"


def test_the_weakalign_command_dispatches_and_helps():
    from weakalign.cli import console

    assert console(["check", str(ROOT / "params.yaml")]) == 0
    assert console(["--help"]) == 0 and console([]) == 2 and console(["nonsense"]) == 2
    res = subprocess.run([str(Path(sys.executable).parent / "weakalign"), "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and re.fullmatch(r"weakalign \d+\.\d+\.\d+\n", res.stdout), res
    for module in ("weakalign.config.params", "weakalign.study", "weakalign.aggregate"):
        res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "usage:" in res.stdout, module


def test_every_flag_is_read_by_its_stage():
    """No argument nobody reads: each flag of a stage's command is used as `args.<name>` in its script."""
    for script in STAGES:
        read = {n.attr for n in ast.walk(ast.parse(script.read_text()))
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "args"}
        unread = [f for f in _command_flags(script) if f[2:].replace("-", "_") not in read]
        assert not unread, f"stages/{script.name}: {unread} in its command, never read"


# A flag whose path is neither a dep nor an out: the stage's work folder for resuming a killed run (resume.py),
# removed when the stage finishes, so it must not be an out (DVC would then cache a folder that is gone).
NOT_A_DEP_OR_OUT = {"--checkpoints"}


@pytest.mark.parametrize("script", STAGES, ids=lambda p: p.stem)
def test_each_stage_logs_under_its_own_name(script):
    """A stage's log lines read `weakalign.<stage>`, whatever library module shares its name (a move of the
    package's modules once renamed five of them to `weakalign.<floor>.<module>`)."""
    assert f'log = logging.getLogger("weakalign.{script.stem}")' in script.read_text()


def test_every_path_a_stage_is_given_is_a_dep_or_an_out_and_nothing_else_is_declared():
    """Each path of a stage is named twice, in its docstring's command (what it reads and writes) and in dvc.yaml's
    deps/outs; they must be the same set (the code deps aside, which scripts/stage_deps.py computes), so a path
    read but not tracked cannot leave the stage cached when it changes, and a tracked path the stage never reads
    cannot hide. local_models/ is computed too: a stage reaches it through the model references in params."""
    import yaml

    from weakalign.cli import command_template

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        spec = spec.get("do", spec)
        script = re.search(r"stages/(\w+)\.py", spec["cmd"]).group(1)
        doc = ast.get_docstring(ast.parse((ROOT / "stages" / f"{script}.py").read_text()), clean=False)
        passed = {path for flag, path in command_template(doc, script).items()
                  if flag not in NOT_A_DEP_OR_OUT and path != "${item}"}  # align's --source is a name
        declared = set()
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in spec.get(key, []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                if not re.fullmatch(r"(stages/\w+|src/weakalign/[\w/]+)\.py", path):
                    declared.add(path)
        declared.discard("params.yaml")  # read through --params (its default); report also hashes the file
        declared.discard("local_models")  # read through base.model etc. (scripts/stage_deps.py computes it)
        info = {p for p in declared - passed if p.endswith(".info.json")}  # written beside its --metrics file
        assert all(p.removesuffix(".info.json") + ".json" in passed for p in info), (name, info)
        assert passed == declared - info, (f"dvc.yaml stage {name}: passed, not declared {sorted(passed - declared)}; "
                                           f"declared, not passed {sorted(declared - info - passed)}")


def test_a_stage_closes_the_process_group_its_trainer_opened(tmp_path, monkeypatch):
    """A rank that exits with gloo's process group open can abort in teardown after its work is done (SIGABRT,
    "terminate called without an active exception": seen once in the accelerate test, `sft` under two processes).
    `cli.run` closes the group as the stage ends, whether it succeeded or failed."""
    import argparse

    import torch.distributed as dist

    from weakalign import cli

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose(ROOT / "presets" / "tiny.yaml"), sort_keys=False))
    monkeypatch.chdir(tmp_path)

    def trains(fails):
        def main(args, params):
            dist.init_process_group("gloo", init_method=f"file://{tmp_path / str(fails)}", rank=0, world_size=1)
            if fails:
                raise ValueError("a bad value")
        return main

    for fails, status in ((False, 0), (True, 2)):
        assert cli.run(trains(fails), argparse.ArgumentParser(prog="python stages/demo.py"), argv=[]) == status
        assert not dist.is_initialized(), fails


def test_ctrl_c_ends_a_stage_in_one_line_with_nothing_written(tmp_path):
    """SIGINT to a real stage process (the shared `cli.run` every stage goes through) while it writes: exit 130,
    one line on stderr saying it was interrupted and how the rerun resumes, no traceback, no output and no
    temporary file left."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose(root / "presets" / "tiny.yaml"), sort_keys=False))
    script = tmp_path / "slow_stage.py"
    script.write_text(
        "import argparse, sys, time\n"
        "from weakalign import cli\n"
        "from weakalign.records.io import atomic_file\n"
        "def main(args, params):\n"
        "    with atomic_file('out.txt') as f:\n"
        "        f.write('half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "p = argparse.ArgumentParser(prog='slow_stage')\n"
        "p.add_argument('--checkpoints')\n"
        "sys.exit(cli.run(main, p))\n")
    # Ctrl-C reaches a foreground job, whose SIGINT is the default. A suite started in the background by a shell
    # without job control (`make test &`, nohup) inherits SIGINT ignored, and Python then keeps it ignored: the
    # stage slept on and this test timed out (twice in full runs started that way, never in the foreground).
    proc = subprocess.Popen([sys.executable, str(script), "--checkpoints", "checkpoints/slow_stage"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if " INFO " not in line]  # the stage's own log lines
    assert lines == ["slow_stage: interrupted; none of its outputs were written. `dvc repro` runs it again, resuming "
                     "from its last checkpoint in checkpoints/slow_stage if there is one"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "slow_stage.py"]


def test_params_edited_while_a_stage_runs_leave_no_output(tmp_path, monkeypatch, capsys):
    """params.yaml changed mid-stage (a seed switched while training ran): DVC would record the new params beside
    outputs of the old ones and serve them from its run cache later. The stage refuses to land them: exit 2."""
    import argparse

    from weakalign import cli
    from weakalign.records.io import atomic_file

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(compose(root / "presets" / "tiny.yaml"), sort_keys=False))

    def main(args, p):
        with atomic_file("out.txt") as f:
            f.write(str(p.base.seed))
        params.write_text(params.read_text().replace("seed: 0", "seed: 1", 1))

    assert "seed: 0" in params.read_text()
    assert cli.run(main, argparse.ArgumentParser(prog="slow_stage"), argv=[]) == 2
    assert "params.yaml: changed while slow_stage ran" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_a_full_disk_ends_a_stage_in_one_line_with_nothing_written(tmp_path, monkeypatch, capsys):
    import argparse
    import errno

    from weakalign import cli
    from weakalign.records.io import atomic_file

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose(root / "presets" / "tiny.yaml"), sort_keys=False))

    def main(args, p):
        with atomic_file("first.txt") as f:
            f.write("done")
        with atomic_file("second.txt") as f:
            f.write("half")
            raise OSError(errno.ENOSPC, "No space left on device", "second.txt")

    assert cli.run(main, argparse.ArgumentParser(prog="full_stage"), argv=[]) == 2
    assert capsys.readouterr().err.strip() == ("full_stage: error: the disk is full (second.txt); none of its outputs "
                                              "were written: free some space and run it again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_logging_drops_deepspeeds_cpu_fallback_note_and_nothing_else(capsys):
    """Where DeepSpeed is installed, transformers imports it in every stage and, without a GPU, it warned once per
    process that it fell back to the CPU (13 lines in a tiny repro): that one note is dropped, its other warnings
    are not."""
    import logging

    from weakalign.cli import setup_logging

    setup_logging()
    ds = logging.getLogger("DeepSpeed")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    ds.addHandler(handler)
    try:
        ds.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        ds.warning("ZeRO stage 3 needs more memory")
    finally:
        ds.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["ZeRO stage 3 needs more memory"]
