"""Surviving a killed stage: training checkpoints, partial results of sampling and labeling, fault injection.

Each long stage gets a work folder `${paths.checkpoints}/<stage>` that is *not* a DVC output (DVC deletes a
stage's outputs before it reruns it; this folder must outlive that). In it:

- training stages keep TRL/transformers checkpoints (`checkpoint-<step>/`, every `dpo.save_steps` steps) and
  resume from the newest complete one;
- sampling and labeling append every finished batch to a :class:`BatchLog` and skip those batches on a rerun.

Everything in the folder is tagged with a fingerprint of what determines it (inputs, params, seed, model files,
and the code that computed it: `code_identity`), so a rerun with other inputs or other code starts over instead of
mixing results. A stage deletes its folder once its outputs
are written. Resumed results equal uninterrupted ones
(tests/test_pipeline.py::test_a_second_clean_clone_killed_six_times_resumes_to_the_same_bytes).

Fault injection, for the tests: ``WEAKALIGN_CRASH_AFTER=<stage>:<n>`` SIGKILLs the process (under `accelerate
launch`, every process) right after the n-th checkpoint or batch of that stage (``sft``, ``train_weak``,
``label_rm``, ``align@<source>``, ``label_weak``, ``label_judge``, ``generate_pairs``, ``evaluate``) is safely on
disk, the way an out-of-memory killer or a lost node would.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Modules and sub-packages no stage runs: changing them changes no result (the study, the sweep aggregator, the
# result fingerprint, presets as experiments). Their home is here, the lowest module that needs them (code_identity;
# weakalign.fingerprint). "study.py" is the study before it became a package: kept so that the code digest of a
# commit that has it (a committed study run's) is measured as it was.
NOT_PIPELINE = {"study", "study.py", "aggregate.py", "fingerprint.py", "preset.py"}
STAGE = ""  # the running stage's name (`align@weak`), set by weakalign.cli.run; used by crash_point
_CRASH_ENV = "WEAKALIGN_CRASH_AFTER"
_events = 0


def fingerprint(*parts: Any) -> str:
    """A short digest of JSON-able parts (params dumps, digests, lists of texts)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def files_digest(path: str | Path) -> str:
    """Identity of a file or folder of files for a fingerprint: names, sizes and modification times.

    Cheap for multi-GB weights, and conservative: rewriting a file changes its mtime, so partial results are
    dropped whenever an input may have changed, never reused for a different one.
    """
    path = Path(path)
    base, at, suffix = str(path).rpartition("@")
    if not path.exists() and at and "/" not in suffix and Path(base).exists():
        return f"{files_digest(base)}@{suffix}"  # a depth-pruned reference (models/base@layers=8): its base's files
    if not path.exists():
        return f"{path}:absent"  # e.g. `tiny-random` or `embedded:smollm2`: the reference itself is the identity
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    return fingerprint([(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def crash_point() -> None:
    """Count one safely written checkpoint/batch; SIGKILL ourselves if WEAKALIGN_CRASH_AFTER says so."""
    global _events
    _events += 1
    spec = os.environ.get(_CRASH_ENV)
    if not spec:
        return
    stage, _, n = spec.rpartition(":")
    if stage == STAGE and n.isdigit() and _events == int(n):
        log.warning("%s=%s: killing %s now (fault injection)", _CRASH_ENV, spec, STAGE)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def is_main_process() -> bool:
    """False in every process but the first under `accelerate launch` (RANK is set by its launcher); only the
    first writes a stage's outputs, metrics and curves."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare(work: str | Path, key: str) -> Path:
    """The stage's work folder, emptied unless it holds partial results for this exact `key`.

    Under `accelerate launch` the first process prepares it before the others look, so all of them see the same
    checkpoints."""
    with main_process_first():
        return _prepare(work, key) if is_main_process() else Path(work)


@contextlib.contextmanager
def main_process_first():
    """Under `accelerate launch`, the first process runs the block before the others; otherwise just runs it."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    import torch
    from accelerate import PartialState

    # cpu= as TrainingArguments(use_cpu=...) will ask, so that the shared state agrees with the trainer's
    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():
        yield


def is_pipeline(path: Path, package: Path = Path("src/weakalign")) -> bool:
    """Whether a file can change a stage's result: anything but this package's NOT_PIPELINE modules and folders."""
    return not (path.is_relative_to(package) and path.relative_to(package).parts[0] in NOT_PIPELINE)


def pipeline_files(package: Path) -> list[Path]:
    """This package's pipeline modules (sub-packages included), sorted."""
    return sorted(f for f in package.rglob("*.py") if is_pipeline(f, package))


@functools.cache
def code_identity() -> str:
    """The code that computes a stage's partial results: this package's pipeline modules, the running stage script
    and the versions of the libraries that do the numerics. A batch or checkpoint made by other code is not resumed
    (a resume across a code change reused 8 of 20 labels computed the old way)."""
    from importlib.metadata import PackageNotFoundError, version

    package = Path(__file__).parent
    files = pipeline_files(package)
    script = Path(sys.argv[0])
    if script.suffix == ".py" and script.is_file():
        files.append(script)
    h = hashlib.sha256()
    for f in files:
        name = f.relative_to(package).as_posix() if f.is_relative_to(package) else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    for lib in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        with contextlib.suppress(PackageNotFoundError):
            h.update(f"{lib}=={version(lib)}\0".encode())
    return h.hexdigest()[:16]


def _prepare(work: str | Path, key: str) -> Path:
    work = Path(work)
    key = fingerprint(key, code_identity())
    stamp = work / "fingerprint"
    if work.exists():
        try:
            same = stamp.read_text().strip() == key
        except OSError:
            same = False
        if not same:
            log.info("%s holds partial results of other inputs, params or code: starting over", work)
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        stamp.write_text(key + "\n")
    return work


def finish(work: str | Path) -> None:
    """Drop the work folder once the stage's outputs are in place."""
    shutil.rmtree(work, ignore_errors=True)


def last_checkpoint(work: str | Path) -> Path | None:
    """The newest complete `checkpoint-<step>` in `work`, or None.

    transformers writes a checkpoint's trainer_state.json last, so a checkpoint whose state file parses is whole;
    one cut short by a kill is skipped (and pruned by the trainer later).
    """
    best = None
    for ckpt in Path(work).glob("checkpoint-*"):
        step = ckpt.name.rpartition("-")[2]
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.info("ignoring incomplete checkpoint %s", ckpt)
            continue
        if step.isdigit() and (best is None or int(step) > best[0]):
            best = (int(step), ckpt)
    return best[1] if best else None


class BatchLog:
    """Finished batches of a batched computation, appended to a JSONL file as they complete.

    A rerun reads back every whole line and recomputes only the missing batches. Batches are defined by the
    caller before any work starts (same inputs, same order), so resumed results are the uninterrupted ones.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.done: dict[int, Any] = {}
        good = 0  # bytes of whole, valid lines
        if self.path.exists():
            data = self.path.read_bytes()
            for line in data.splitlines(keepends=True):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("torn line")
                    row = json.loads(line)
                    self.done[int(row["batch"])] = row["result"]
                except (ValueError, KeyError, TypeError):
                    break  # a line torn by the kill: it and anything after it are recomputed
                good += len(line)
            if self.done:
                log.info("resuming: %d finished batches read back from %s", len(self.done), self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("ab")
        self._f.truncate(good)

    def add(self, batch: int, result: Any) -> None:
        self._f.write((json.dumps({"batch": batch, "result": result}, ensure_ascii=False) + "\n").encode())
        self._f.flush()
        os.fsync(self._f.fileno())
        self.done[batch] = result
        crash_point()

    def close(self) -> None:
        self._f.close()


def replay(trainer, curves, ckpt: Path) -> None:
    """Before a resumed `trainer.train`: log the curves up to `ckpt` to dvclive as the uninterrupted run did (the
    trainer restores the same history into its state and logs only what comes after), and restore TRL's running
    token count, which TRL 1.16 keeps outside the trainer state (exact when save_steps is a multiple of
    logging_steps, as the defaults are)."""
    history = json.loads((ckpt / "trainer_state.json").read_text())["log_history"]
    for entry in history:
        curves.on_log(trainer.args, trainer.state, trainer.control, logs={k: v for k, v in entry.items() if k != "step"},
                      step=entry.get("step"))
    tokens = [e["num_tokens"] for e in history if "num_tokens" in e]
    if tokens and hasattr(trainer, "_total_train_tokens"):
        trainer._total_train_tokens = int(tokens[-1])
