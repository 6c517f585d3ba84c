"""Did a change to the pipeline change its results? The result fingerprint that keeps a study current.

    python -m weakalign.fingerprint              # measure HEAD here, record it in study/fingerprints.jsonl
    python -m weakalign.fingerprint --rev abc123 # another commit (a study run's), on this machine

A study run is a record of the code it ran with, and it stays current while today's code gives the same results:
not while its source is the same. The fingerprint of a code version is the hash of every result of one `dvc repro`
of the tiny preset (with every source the study aligns) in a scratch clone: the data files, the model weights and
the metrics without their timings. Numerics differ between machines (bf16 on CPUs with AMX or without), so it is
recorded per machine kind, and two code versions give the same results when they share a machine kind whose
fingerprints are equal. study/fingerprints.jsonl keeps them, a line per code digest and machine kind (so two
machines' records merge in git line by line: .gitattributes merges the file by union); `study run`
measures the ones it needs (about 6 min each on 2 cores), `study report` only reads them.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from weakalign.config.params import compose, read_yaml
from weakalign.records.io import RECORDS_FILE
from weakalign.records.resume import pipeline_files

log = logging.getLogger("weakalign.fingerprint")

RECORDS = Path("study/fingerprints.jsonl")
PRESET = Path("presets/tiny.yaml")
# Metrics keys that time a run rather than say what it computed (scripts/same_results.py reads them too).
TIMINGS = ("seconds", "seconds_per_1000_pairs", "train_runtime_s", "resumed_from_step")


def code_digest(root: Path = Path(".")) -> str:
    """What the pipeline's code is: the stage scripts, the library modules they can import (all but
    NOT_PIPELINE), dvc.yaml's stages, and pyproject.toml (the pinned library versions)."""
    h = hashlib.sha256()
    files = sorted([*pipeline_files(root / "src/weakalign"), *root.glob("stages/*.py"), *root.glob("pyproject.toml")])
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    stages = yaml.safe_load((root / "dvc.yaml").read_text()).get("stages", {})
    h.update(json.dumps(stages, sort_keys=True).encode())
    return h.hexdigest()[:12]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict:
    """What runs the pipeline here: the CPU, whether it has native bf16 (the `bf16` keys mean fp32 where it has
    not, models.bf16_usable, so two such machines run different arithmetic), the GPU if any, and torch."""
    from importlib.metadata import version

    import torch

    from weakalign.modeling.models import native_bf16

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "gpu": gpu, "native_bf16": native_bf16(), "torch": version("torch")}


def machine_kind(m: dict | None = None) -> str:
    """machine() as one string: the key under which a fingerprint is recorded."""
    m = m or machine()
    return f"{m['cpu']} | {m['gpu'] or 'no GPU'} | native bf16 {m['native_bf16']} | torch {m['torch']}"


def without_timings(d: dict) -> dict:
    return {k: without_timings(v) if isinstance(v, dict) else v for k, v in d.items()
            if not any(k == t or k.endswith("_" + t) for t in TIMINGS)}


def result_hashes(root: Path) -> dict[str, str]:
    """sha256 of every result of a repro'd checkout: data JSONL and model weights byte for byte, metrics as JSON
    without timings; bookkeeping (*.info.json) and the study's own metrics left out."""
    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    out = {}
    for pattern in ("data/**/*.jsonl", "models/**/*.safetensors"):
        out |= {_name(p.relative_to(root)): sha(p.read_bytes()) for p in sorted(root.glob(pattern))}
    for readme in sorted(root.glob("data/**/README.md")):  # a records folder with no records: no rows, as before
        if [f.name for f in readme.parent.iterdir()] == ["README.md"]:
            out[_name(readme.parent.relative_to(root) / RECORDS_FILE)] = sha(b"")
    for p in sorted(root.glob("metrics/**/*.json")):
        if not (p.name.startswith("study") or p.name.endswith(".info.json")):
            blob = json.dumps(without_timings(json.loads(p.read_text())), sort_keys=True)
            out[p.relative_to(root).as_posix()] = sha(blob.encode())
    return out


def _name(path: Path) -> str:
    """A result's name: its path, but a records folder's file (records.io.write_records) goes by the file the folder
    replaced on 2026-12-07 (data/labels/rm/records.jsonl: data/labels/rm.jsonl; a folder with only a README: that
    file, empty), so the fingerprints measured before, on machines not at hand, still compare."""
    return (path.parent.as_posix() + ".jsonl") if path.name == RECORDS_FILE else path.as_posix()


def results_digest(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]


def load(path: Path = RECORDS) -> dict[str, dict[str, dict]]:
    """code digest -> machine kind -> {results, commit, date}. A code measured twice on one kind (two machines of
    that kind, merged) keeps its latest record."""
    records: dict[str, dict[str, dict]] = {}
    lines = path.read_text().splitlines() if path.is_file() else []
    for row in sorted((json.loads(line) for line in lines if line.strip()), key=lambda r: r["date"]):
        records.setdefault(row["code"], {})[row["kind"]] = {k: row[k] for k in ("results", "commit", "date")}
    return records


def same_results(code_a: str | None, code_b: str, records: dict[str, dict[str, dict]]) -> bool:
    """Whether two code versions give the same results: the same code, or equal fingerprints on a machine kind
    that measured both."""
    if code_a == code_b:
        return True
    a, b = records.get(code_a or "", {}), records.get(code_b, {})
    return any(a[kind]["results"] == b[kind]["results"] for kind in a.keys() & b.keys())


def fingerprint_params(root: Path) -> dict:
    """The tiny preset, aligning every source the default study does as well as its own: so the fingerprint
    runs each label rule the study's results depend on."""
    tiny = compose(root / PRESET)
    study = read_yaml(root / "params.yaml").get("study", {})
    extra = [s for s in study.get("sources", []) if s not in tiny["align"]["sources"]]
    tiny["align"]["sources"] = [*tiny["align"]["sources"], *extra]
    return tiny


def measure(rev: str = "HEAD", dvc: str = "dvc", repo: Path = Path(".")) -> tuple[str, str]:
    """(code digest, results digest) of commit `rev`: a scratch clone at `rev` with its own DVC cache (so nothing
    is restored from this checkout's run cache), the tiny preset as its params.yaml, one `dvc repro`."""
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="weakalign-fingerprint-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo.resolve()), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", sha], check=True)
        (clone / "params.yaml").write_text(yaml.safe_dump(fingerprint_params(clone), sort_keys=False))
        # The clone's own code, not this checkout's editable install; the venv's python first on PATH.
        env = {**os.environ, "PYTHONPATH": str(clone / "src"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        logfile = Path(tmp) / "repro.log"
        log.info("fingerprint: dvc repro of the tiny preset at %s in %s (log %s)", sha[:7], clone, logfile)
        with logfile.open("w") as f:
            done = subprocess.run([dvc, "repro"], cwd=clone, env=env, stdout=f, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = logfile.read_text().splitlines()[-15:]
            raise RuntimeError(f"fingerprint: dvc repro at {sha[:7]} failed:\n" + "\n".join(tail))
        return code_digest(clone), results_digest(result_hashes(clone))


def record(code: str, results: str, rev: str, kind: str, path: Path = RECORDS) -> None:
    records = load(path)
    records.setdefault(code, {})[kind] = {"results": results, "commit": rev[:12],
                                          "date": datetime.date.today().isoformat()}
    rows = [{"code": c, "kind": k, **r} for c, kinds in sorted(records.items()) for k, r in sorted(kinds.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    tmp.replace(path)


def ensure(rev: str, code: str, dvc: str = "dvc", kind: str | None = None) -> bool:
    """Measure and record `rev`'s fingerprint on this machine unless it is recorded; True when it measured."""
    kind = kind or machine_kind()
    if kind in load().get(code, {}):
        return False
    measured, results = measure(rev, dvc)
    if measured != code:
        raise RuntimeError(f"fingerprint: {rev} has code {measured}, not {code}")
    record(code, results, subprocess.run(["git", "rev-parse", rev], check=True, capture_output=True,
                                         text=True).stdout.strip(), kind)
    log.info("fingerprint: code %s gives results %s on %s", code, results, kind)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weakalign.fingerprint", description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", default="HEAD", help="the commit to fingerprint (default HEAD)")
    p.add_argument("--dvc", default=shutil.which("dvc") or "dvc", help="the dvc executable")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The commit is named before measuring: HEAD may move during the ~6 minutes (the study commits its runs).
    sha = subprocess.run(["git", "rev-parse", args.rev], check=True, capture_output=True, text=True).stdout.strip()
    code, results = measure(sha, args.dvc)
    record(code, results, sha, machine_kind())
    print(f"{args.rev} ({sha[:7]}): code {code} gives results {results} on {machine_kind()} ({RECORDS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
