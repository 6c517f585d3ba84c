"""Reading and writing the pipeline's files: JSONL validated row by row, and atomic writes.

Every reader names the file and the line of a bad row; every writer writes to a temporary path next to the target
and renames it into place, so a stage that fails leaves no half-written output for DVC to cache.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Bad input data: the message names the file and, where there is one, the line."""


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json.loads keeps the last of two equal keys; a row that says two things is an error instead."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_line(line: str):
    """One JSON document, strictly: no duplicate keys, no NaN/Infinity (Python's json accepts both)."""
    return json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


# Bounds on what a small input may make us hold: one row, and what a gzip file may expand to. A 2 MB gzip holding
# a 2 GB line was read whole (4.3 GB peak); real preference data compresses about 4x.
MAX_LINE_BYTES = 16 * 2**20
MAX_GZIP_RATIO, GZIP_RATIO_FROM = 100, 16 * 2**20  # refused past 100x the file's size, once above 16 MiB


def check_readable(path: Path) -> None:
    """A path the readers can open: a regular file (not a folder, FIFO or device), readable; DataError naming it
    otherwise."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: not a regular file (a FIFO, socket or device would block or never end)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot read it (permission denied)")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; raise DataError naming file and line otherwise.

    Lines are read as bytes and decoded one by one, so invalid UTF-8 is reported on its own line (a text-mode
    reader decodes ahead in chunks and would blame an earlier one).
    """
    path = Path(path)
    check_readable(path)
    lineno, total = 0, 0
    limit = max(MAX_GZIP_RATIO * path.stat().st_size, GZIP_RATIO_FROM) if path.suffix == ".gz" else None
    try:
        with _open_bytes(path) as f:
            while raw := f.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise DataError(f"{path}:{lineno}: a line over {MAX_LINE_BYTES // 2**20} MiB; no row is that long")
                total += len(raw)
                if limit is not None and total > limit:
                    raise DataError(f"{path}: decompresses to over {total // 2**20} MiB, more than {MAX_GZIP_RATIO} "
                                    "times its size (a gzip bomb?); nothing read")
                obj = _parse_row(path, lineno, raw)
                if obj is not None:
                    yield lineno, obj
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # not gzip, truncated, or corrupt inside
        where = f" after line {lineno}" if lineno else ""
        raise DataError(f"{path}: not a readable gzip file{where} ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def _parse_row(path: Path, lineno: int, raw: bytes) -> dict | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start + 1})") from None
    if not line.strip():
        return None
    try:
        obj = parse_json_line(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{path}:{lineno}: malformed JSON (nested too deep)") from None
    except ValueError as e:  # a duplicate key, NaN/Infinity, an integer too long to convert
        raise DataError(f"{path}:{lineno}: malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    if "\\u" in line:  # an escape can spell half a UTF-16 pair, which is not text: say so here, not at a write
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(f"{path}:{lineno}: a lone surrogate escape (\\u{ord(e.object[e.start]):04x}) is "
                            "not text") from None
    return obj


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "row"
        parts.append(f"field {loc!r}: {err['msg']}")
    return "; ".join(parts)


def read_numbered(path: str | Path, schema: type[M]) -> list[tuple[int, M]]:
    """(line number, validated row) for each row; the first bad row raises DataError with file and line, and a
    file without rows is an error too."""
    rows = []
    for lineno, obj in iter_jsonl(path):
        try:
            rows.append((lineno, schema.model_validate(obj)))
        except ValidationError as e:
            raise DataError(f"{path}:{lineno}: {_describe(e)}") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_jsonl(path: str | Path, schema: type[M]) -> list[M]:
    """Read a JSONL file into validated rows; the first bad row raises DataError with file and line."""
    return [row for _, row in read_numbered(path, schema)]


# Renames that wait for the whole stage: inside `stage_outputs()`, a finished atomic_file/atomic_dir is not moved
# into place until the stage's last write has succeeded, so a stage that fails late (a NaN metric after the model
# was saved) leaves none of its outputs behind for DVC to cache.
_pending: list[tuple[Path, Path]] | None = None


def _mode(is_dir: bool) -> int:
    """The mode a plain open()/mkdir() would give under the current umask (mkstemp/mkdtemp make 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if is_dir else 0o666) & ~mask


def _land(tmp: Path, path: Path) -> None:
    if tmp.is_dir() and path.exists():  # os.replace renames a folder only onto nothing or an empty folder
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


def _discard(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _finish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, _mode(tmp.is_dir()))
    if _pending is None:
        _land(tmp, path)
        return
    for i, (t, p) in enumerate(_pending):  # written twice in one stage: the later write wins
        if p == path:
            _discard(t)
            del _pending[i]
            break
    _pending.append((tmp, path))


def _sweep(path: Path) -> None:
    """Delete what a killed writer of `path` left: its temporary files or folders beside it (`.<name>.*.tmp`, a
    389 MB model folder when the kill came while saving). DVC runs one stage per output at a time, so any such
    leftover that this stage is not holding back (`_pending`) is dead."""
    held = {t for t, _ in _pending or []}
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if leftover not in held:
            log.info("removing %s, left by an interrupted write of %s", leftover, path)
            _discard(leftover)


@contextlib.contextmanager
def _writable(path: Path) -> Iterator[None]:
    """An output folder that cannot be written is bad input (the path or its permissions), not a crash."""
    try:
        yield
    except PermissionError:
        raise DataError(f"{path}: cannot write it (permission denied on {path.parent})") from None
    except (NotADirectoryError, FileExistsError):
        raise DataError(f"{path}: cannot write it (a file stands where a folder of its path should be)") from None


@contextlib.contextmanager
def stage_outputs() -> Iterator[None]:
    """Hold back every atomic write of the block; land them all, in order, only if the block succeeds."""
    global _pending
    if _pending is not None:  # nested: the outer block decides
        yield
        return
    _pending = []
    try:
        yield
        for tmp, path in _pending:
            _land(tmp, path)
    except BaseException:
        for tmp, _ in _pending:
            _discard(tmp)
        raise
    finally:
        _pending = None


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds (and, inside
    `stage_outputs`, only when the whole stage has). The file gets the mode the umask gives, not mkstemp's 0600."""
    path = Path(path)
    with _writable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        _finish(Path(tmp), path)
    except BaseException:
        _discard(Path(tmp))
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds (inside
    `stage_outputs`, only when the whole stage has)."""
    path = Path(path)
    with _writable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _finish(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _dump(obj) -> dict:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def write_jsonl(path: str | Path, rows: Iterable) -> int:
    n = 0
    with atomic_file(path) as f:
        for row in rows:
            try:
                f.write(json.dumps(_dump(row), ensure_ascii=False, sort_keys=False, allow_nan=False) + "\n")
            except ValueError:
                raise DataError(f"{path}: row {n + 1} holds NaN or infinity; nothing written") from None
            n += 1
    return n


# An output a stage may leave without rows (a labeler that is off, a source of prompts only) is a folder: the rows in
# records.jsonl, or only a README.md saying why none (DVC warns "'…' is empty" at each stage naming an empty file).
RECORDS_FILE = "records.jsonl"


def write_records(folder: str | Path, rows: Iterable | None, why_none: str = "") -> None:
    """`rows` into `folder`/records.jsonl, or, for None, only `folder`/README.md holding `why_none`."""
    if rows is None and not why_none:
        raise ValueError(f"{folder}: no records, and no README saying why")
    with atomic_dir(folder) as tmp:
        if rows is None:
            (tmp / "README.md").write_text(why_none.rstrip() + "\n", encoding="utf-8")
        else:
            write_jsonl(tmp / RECORDS_FILE, rows)


def records_path(folder: str | Path) -> Path | None:
    """The file of the rows `write_records` wrote into `folder`, None where it wrote none (a JSONL file: itself)."""
    folder = Path(folder)
    for path in (folder, folder / RECORDS_FILE):  # a JSONL file, or the folder's records file
        if path.is_file():
            return path
    if (folder / "README.md").is_file():
        return None
    raise DataError(f"{folder}: neither {RECORDS_FILE} nor README.md (a folder written by a weakalign stage)")


def read_records(folder: str | Path, schema: type[M]) -> list[M] | None:
    """The rows `write_records` wrote into `folder`, None where it wrote none."""
    return None if (path := records_path(folder)) is None else read_jsonl(path, schema)


def write_json(path: str | Path, obj) -> None:
    try:
        text = json.dumps(_dump(obj), indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise DataError(f"{path}: a value is NaN or infinity; nothing written") from None
    with atomic_file(path) as f:
        f.write(text + "\n")


# Run bookkeeping, not results: wall times, a resume, the process count, whether training "learned", and any
# string or flag (they restate params: the judge's name, the source). Two runs with the same results differ in them,
# so `write_metrics` keeps them out of the metrics file, in `<name>.info.json` beside it (a DVC out, not a metric):
# `dvc metrics diff` of two commits with the same results then shows nothing.
BOOKKEEPING = ("seconds", "seconds_per_1000_pairs", "learned", "resumed_from_step", "num_processes")


def _is_bookkeeping(key: str, value) -> bool:
    return isinstance(value, (str, bool)) or any(key == b or key.endswith("_" + b) for b in BOOKKEEPING)


def split_metrics(data: dict, is_info: Callable[[str, Any], bool] = _is_bookkeeping) -> tuple[dict, dict]:
    """Nested `data` as two trees of the same shape: its results and its bookkeeping (the leaves `is_info` picks);
    a section left with no results but with bookkeeping appears only in the second."""
    results, info = {}, {}
    for key, value in data.items():
        if isinstance(value, dict):
            r, i = split_metrics(value, is_info)
            if r or not i:
                results[key] = r
            if i:
                info[key] = i
        elif is_info(key, value):
            info[key] = value
        else:
            results[key] = value
    return results, info


def info_path(path: str | Path) -> Path:
    """The bookkeeping file beside a metrics file: metrics/train_weak.json -> metrics/train_weak.info.json."""
    path = Path(path)
    return path.with_name(path.stem + ".info.json")


def write_metrics(path: str | Path, data: dict, is_info: Callable[[str, Any], bool] = _is_bookkeeping) -> None:
    """A stage's metrics: the results (numbers and nulls only) to `path`, the bookkeeping to `info_path(path)`."""
    results, info = split_metrics(data, is_info)
    write_json(path, results)
    write_json(info_path(path), info)


def _merge(a: dict, b: dict) -> dict:
    return {**a, **{k: _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                    for k, v in b.items()}}


def read_metrics(path: str | Path) -> dict:
    """A metrics file with its bookkeeping merged back (for the report): what the stage passed to write_metrics."""
    info = info_path(path)
    return _merge(read_json(path), read_json(info) if info.exists() else {})


def read_json(path: str | Path) -> dict:
    path = Path(path)
    check_readable(path)
    try:
        return parse_json_line(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 ({e.reason} at byte {e.start + 1})") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON (nested too deep)") from None
    except ValueError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None
