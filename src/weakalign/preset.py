"""Run a preset as one DVC experiment, leaving the working tree as it is.

    make repro PRESET=tiny                 # or: weakalign preset tiny
    python -m weakalign.preset tiny        # presets/tiny.yaml; a path works too

A preset holds only what differs from params.yaml (`extends`, weakalign.config.params.compose). It runs as
`dvc exp run --temp -n <name> -S key=value ...`, one `-S` per key where the composed preset differs from
params.yaml: DVC copies the workspace to a temporary folder, sets those params there and runs the pipeline, and
keeps the result as the experiment <name> (a git ref with its params, metrics and report; its models in the DVC
cache). So choosing a preset rewrites no tracked file, and going back to the default costs nothing.
`dvc exp show` lists it, `dvc exp diff` compares it, `dvc exp apply <name>` brings its outputs into the workspace.
A rerun replaces the experiment of the same name.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from weakalign.config.params import Params, ParamsError, compose, load_params


def preset_path(name: str) -> Path:
    """`tiny` -> presets/tiny.yaml; a path is taken as it is."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else Path("presets") / f"{name}.yaml"


def changes(model: type[BaseModel], default: dict, preset: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) wherever the composed preset differs from the default, walking the schema's sections;
    a value is a leaf, a list or a free mapping (`study.teachers`), never a section."""
    for key, value in preset.items():
        field = model.model_fields.get(key)
        sub = field.annotation if field is not None else None
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, dict):
            yield from changes(sub, default.get(key) or {}, value, f"{prefix}{key}.")
        elif key not in default or default[key] != value:
            yield f"{prefix}{key}", value


def flow(value: Any) -> str:
    """A value as `dvc exp run -S` parses it (Hydra's override grammar: lists as [a, b], null, true; a string
    with anything but letters, digits and `_.-` quoted, so `base@layers=8` or `embedded:smollm2` stay strings)."""
    if isinstance(value, str) and (not re.fullmatch(r"[A-Za-z0-9_.-]+", value)
                                   or yaml.safe_load(value) != value):  # `1e-3`, `null`, `true` stay strings
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def exp_ref(name: str) -> str | None:
    """The git ref DVC files the experiment `name` under (refs/exps/<sha[:2]>/<sha[2:]>/<name>), or None."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], check=True, capture_output=True,
                          text=True).stdout.split()
    return next((x for x in refs if x.rsplit("/", 1)[-1] == name), None)


def _hydra(value: Any) -> str:
    """A value in Hydra's override grammar (what `dvc exp run -S` parses): `flow`, and mappings as {k: v}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_hydra(v)}" for k, v in value.items()) + "}"
    return flow(value)


def command(path: Path, name: str) -> list[str]:
    """The `dvc exp run` argv (no shell: each `-S` is one argument) for the preset at `path`. A free mapping is
    replaced, not merged (Hydra would merge it): `~key` deletes it, `+key={...}` writes the preset's."""
    sets = []
    for key, value in changes(Params, compose("params.yaml"), compose(path)):
        pairs = [f"~{key}", f"+{key}={_hydra(value)}"] if isinstance(value, dict) else [f"{key}={_hydra(value)}"]
        sets += [arg for pair in pairs for arg in ("-S", pair)]
    return ["dvc", "exp", "run", "--temp", "-n", name, *sets]


def _dvc(argv: list[str], quiet_checkout: bool = False) -> int:
    """`dvc <argv>` in this process (the installed dvc package). With `quiet_checkout`, less one message: before an
    experiment runs, DVC's temporary copy checks out every output dvc.yaml declares, and the outputs of the stages
    a preset adds (`align@<source>` for a source the default leaves out) have no `dvc.lock` entry yet, so DVC logs
    "No file hash info found for '...'. It won't be created." for each, a dozen lines before those stages create
    them. Only that message of that one logger is dropped."""
    from dvc.cli import main as dvc_main

    if quiet_checkout:
        logging.getLogger("dvc_data.index.checkout").addFilter(
            lambda record: not str(record.msg).startswith("No file hash info found for"))
    return dvc_main(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="weakalign preset", description=__doc__.split("\n\n")[0])
    p.add_argument("preset", help="a preset name (tiny, tone, hh-local, full-ft, paper-hh-opt, ...) or a file")
    p.add_argument("--name", help="the experiment's name (default: the preset's)")
    args = p.parse_args(argv)
    path = preset_path(args.preset)
    name = args.name or path.stem
    try:
        load_params(path).check_here(str(path))  # in under a second, before DVC copies anything
    except ParamsError as e:
        print(e, file=sys.stderr)
        return 2
    if exp_ref(name):  # DVC refuses a second experiment of the same name
        if _dvc(["exp", "remove", name]) != 0:
            return 1
    rc = _dvc(command(path, name)[1:], quiet_checkout=True)
    if rc != 0:
        return rc
    ref = exp_ref(name)
    print(f"The answer of preset {name}: `git show {ref}:reports/summary.md` (headline: `dvc exp show`; "
          f"`dvc exp apply {name}` brings its outputs into the workspace)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
