"""Benchmark fixtures: the pipeline's own model and data, a results collector, and the JSON/table at the end.

Run with `make bench` (not part of `make test`). Every case times our code path and the plain-library baseline on
the same inputs in the same run; `pytest_sessionfinish` prints the ratios and writes every figure to
benchmarks/results.json, which docs/PERFORMANCE.md quotes. Each case records the commit it was measured at; a
partial run (`pytest benchmarks -k labeling`) replaces only its own cases when the machine is the same.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("WEAKALIGN_BENCH_OUT", ROOT / "benchmarks" / "results.json"))
RESULTS: dict[str, dict] = {}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def _params():
    from weakalign.config.params import load_params

    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def params():
    return _params()


def _needed(path: Path) -> Path:
    """A pipeline output the benchmarks run on; skip with the reason where it has not been made yet."""
    if not path.exists():
        pytest.skip(f"{path} is missing: benchmarks use the pipeline's own model and data; run `make repro` first")
    return path


@pytest.fixture(scope="session")
def base_dir(params) -> Path:
    return _needed(ROOT / params.paths.base_model / "config.json").parent


@pytest.fixture(scope="session")
def weak_dir(params) -> Path:
    return _needed(ROOT / params.paths.weak_model / "config.json").parent


@pytest.fixture(scope="session")
def pairs(params):
    from weakalign.records.io import read_jsonl
    from weakalign.records.schema import Pair

    return read_jsonl(_needed(ROOT / params.paths.unlabeled), Pair)


@pytest.fixture(scope="session")
def test_prompts(params):
    from weakalign.records.io import read_jsonl
    from weakalign.records.schema import Prompt

    return [p.prompt for p in read_jsonl(_needed(ROOT / params.paths.prompts_test), Prompt)]


@pytest.fixture
def record():
    """record(case, variant, **figures): one variant's figures; `ours` / `baseline` pairs get a ratio."""
    def put(case: str, variant: str, **figures):
        RESULTS.setdefault(case, {})[variant] = figures
    return put


def _machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "torch": torch.__version__, "python": platform.python_version()}


def pytest_sessionfinish(session, exitstatus):
    if not RESULTS:
        return
    peak = RESULTS.get("matmul_peak", {}).get("bf16", {}).get("rate")
    for case, variants in RESULTS.items():
        for v in variants.values():
            if peak and isinstance(v, dict) and v.get("flops") and v.get("median_s"):
                v["mfu_vs_bf16_peak"] = round(v["flops"] / v["median_s"] / (peak * 1e12), 4)
                if v.get("executed_flops"):  # what the hardware ran (prefix reuse runs fewer tokens than it stands for)
                    v["mfu_executed_vs_bf16_peak"] = round(v["executed_flops"] / v["median_s"] / (peak * 1e12), 4)
        ours, base = variants.get("ours"), variants.get("baseline")
        if ours and base and ours.get("rate") and base.get("rate"):
            variants["speedup"] = round(ours["rate"] / base["rate"], 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    commit = commit.stdout.strip()
    for variants in RESULTS.values():
        variants["commit"] = commit  # each case says where it was measured: a `-k` rerun replaces only its cases
    machine = _machine()
    cases = dict(RESULTS)
    if OUT.is_file():
        old = json.loads(OUT.read_text())
        if old.get("machine") == machine:  # keep the other cases of an earlier run on the same machine
            cases = {k: {"commit": old.get("commit"), **v} for k, v in old["cases"].items()} | cases
    doc = {"machine": machine, "commit": commit, "cases": cases}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["", f"benchmark results -> {OUT}",
             f"{'case':<20}{'ours':>12}{'baseline':>12}{'ratio':>8}{'MFU ours':>10}  unit"]
    for case, v in RESULTS.items():
        o, b = v.get("ours", v.get("bf16", {})), v.get("baseline", v.get("fp32", {}))
        unit = o.get("unit") or b.get("unit") or ""
        lines.append(f"{case:<20}{o.get('rate', o.get('seconds', '')):>12}{b.get('rate', ''):>12}"
                     f"{v.get('speedup', ''):>8}{o.get('mfu_vs_bf16_peak', ''):>10}  {unit}")
    print("\n".join(lines))
