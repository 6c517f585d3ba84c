"""Each stage's computed deps in dvc.yaml: the project modules its script imports, directly or through other
modules (with the __init__.py of every sub-package on the way), and the folder of local models
(weakalign.config.refs.LOCAL_MODELS) for every stage that reads a model reference from params (`base.model`,
`train_weak.model`, `judge.model`, or the section holding one).

    python scripts/stage_deps.py           # exit 1 listing what dvc.yaml lacks or lists in excess
    python scripts/stage_deps.py --write   # rewrite the src/weakalign/ lines of every stage's deps

Imports inside functions count too (a lazy import still runs the module), so the closure is conservative: a change
to any module a stage can execute re-runs that stage. tests/test_params.py runs the check.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "src/weakalign"
LOCAL_MODELS = "local_models"  # weakalign.config.refs.LOCAL_MODELS (this script runs without the package installed)
MODEL_KEYS = {"base", "base.model", "train_weak", "train_weak.model", "judge", "judge.model"}


def _file(module: str) -> Path | None:
    """The file of a dotted module of the package (`config.params`), or of a sub-package (its __init__.py)."""
    base = LIB.joinpath(*module.split(".")) if module else LIB
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(path: Path) -> set[str]:
    """The package's modules `path` imports (dotted, below `weakalign`), each with the sub-packages above it: importing
    `weakalign.config.params` runs `weakalign/__init__.py` and `weakalign/config/__init__.py` first."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "weakalign" and not node.level:
            mod = node.module.removeprefix("weakalign").lstrip(".")
            found |= {mod} | {f"{mod}.{a.name}".lstrip(".") for a in node.names}  # `from pkg import module`
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise SystemExit(f"{path}: a relative import; the package imports absolutely (weakalign.<floor>.<module>)")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("weakalign.") for a in node.names if a.name.startswith("weakalign.")}
    out = {""} if found else set()
    for mod in found:
        parts = mod.split(".") if mod else []
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in out if _file(m)}


def closure(script: Path) -> list[str]:
    """src/weakalign/<floor>/<m>.py (and each __init__.py on the way) for every module `script` can import, sorted."""
    seen: set[str] = set()
    todo = _imports(script)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo |= _imports(_file(m))
    return sorted(_file(m).relative_to(ROOT).as_posix() for m in seen)


_SCRIPT = re.compile(r"^(\s+)- (stages/\w+\.py)$")
_COMPUTED = re.compile(rf"^\s+- (src/weakalign/[\w/]+\.py|{LOCAL_MODELS})$")


def reads_a_model(text: str) -> set[str]:
    """The scripts of the stages whose params name a model reference (or the whole section holding one)."""
    out = set()
    for stage in yaml.safe_load(text)["stages"].values():
        keys = {k if isinstance(k, str) else next(iter(k)) for k in stage.get("params", [])}
        if keys & MODEL_KEYS:
            out |= {d for d in stage.get("deps", []) if _SCRIPT.match(f"  - {d}")}
    return out


def render(text: str) -> str:
    """dvc.yaml with every stage's computed deps (src/weakalign/ modules, local_models) right after its script."""
    models = reads_a_model(text)
    out = []
    for line in text.splitlines():
        if _COMPUTED.match(line):
            continue
        out.append(line)
        m = _SCRIPT.match(line)
        if m:
            out += [f"{m.group(1)}- {dep}" for dep in closure(ROOT / m.group(2))]
            out += [f"{m.group(1)}- {LOCAL_MODELS}"] * (m.group(2) in models)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    want = render(text)
    if "--write" in argv:
        path.write_text(want)
        return 0
    if want != text:
        import difflib

        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), want.splitlines(True), "dvc.yaml",
                                                   "dvc.yaml (computed deps)"))
        return 1
    print(f"dvc.yaml: every stage depends on the modules its code imports, and on {LOCAL_MODELS}/ where it reads a "
          "model reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
