"""Reading and writing the pipeline's files: JSONL validated row by row, and atomic writes.

Every reader names the file and the line of a bad row; every writer writes to a temporary path next to the target
and renames it into place, so a stage that fails leaves no half-written output for DVC to cache.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Bad input data: the message names the file and, where there is one, the line."""


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; raise DataError naming file and line otherwise.

    Lines are read as bytes and decoded one by one, so invalid UTF-8 is reported on its own line (a text-mode
    reader decodes ahead in chunks and would blame an earlier one).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with _open_bytes(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "row"
        parts.append(f"field {loc!r}: {err['msg']}")
    return "; ".join(parts)


def read_numbered(path: str | Path, schema: type[M], allow_empty: bool = False) -> list[tuple[int, M]]:
    """(line number, validated row) for each row; the first bad row raises DataError with file and line.

    A file without rows is an error unless `allow_empty` (the labels of a labeler that is switched off)."""
    rows = []
    for lineno, obj in iter_jsonl(path):
        try:
            rows.append((lineno, schema.model_validate(obj)))
        except ValidationError as e:
            raise DataError(f"{path}:{lineno}: {_describe(e)}") from None
    if not rows and not allow_empty:
        raise DataError(f"{path}: no rows")
    return rows


def read_jsonl(path: str | Path, schema: type[M], allow_empty: bool = False) -> list[M]:
    """Read a JSONL file into validated rows; the first bad row raises DataError with file and line."""
    return [row for _, row in read_numbered(path, schema, allow_empty)]


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _dump(obj) -> dict:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def write_jsonl(path: str | Path, rows: Iterable) -> int:
    n = 0
    with atomic_file(path) as f:
        for row in rows:
            f.write(json.dumps(_dump(row), ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj) -> None:
    with atomic_file(path) as f:
        json.dump(_dump(obj), f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
