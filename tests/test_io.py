"""Bad input fails with the file and line; writes are atomic."""

from __future__ import annotations

import gzip
import json

import pytest

from weakalign.io import DataError, atomic_dir, atomic_file, read_jsonl, write_jsonl
from weakalign.schema import MAX_CHARS, Pair, Prompt

GOOD = {"id": "a", "prompt_id": "a", "prompt": "Say hi", "response_1": "Hi there", "response_2": "Hello"}


def _write(tmp_path, lines, name="f.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_reads_good_rows_and_skips_blank_lines(tmp_path):
    p = _write(tmp_path, [json.dumps(GOOD), "", json.dumps(GOOD | {"id": "b"})])
    assert [r.id for r in read_jsonl(p, Pair)] == ["a", "b"]


def test_reads_gzip(tmp_path):
    p = tmp_path / "f.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"id": "x", "prompt": "hello"}) + "\n")
    assert read_jsonl(p, Prompt)[0].id == "x"


@pytest.mark.parametrize("line, expect", [
    ('{"id": "a", "prompt": ', "malformed JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "response_2"}), "field 'response_2'"),
    (json.dumps(GOOD | {"response_1": 3}), "field 'response_1'"),
    (json.dumps(GOOD | {"response_1": "   "}), "response_1 is empty"),
    (json.dumps(GOOD | {"response_2": "Hi there"}), "identical"),
    (json.dumps(GOOD | {"response_2": "x" * (MAX_CHARS + 1)}), "over the limit"),
    (json.dumps(GOOD | {"color": "red"}), "field 'color'"),
    (json.dumps(GOOD | {"human": 3}), "field 'human'"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, expect):
    p = _write(tmp_path, [json.dumps(GOOD), json.dumps(GOOD | {"id": "b"}), line])
    with pytest.raises(DataError) as e:
        read_jsonl(p, Pair)
    assert f"{p}:3:" in str(e.value)
    assert expect in str(e.value)


def test_broken_prompts_line_3(tmp_path):
    p = _write(tmp_path, ['{"id": "p1", "prompt": "a"}', '{"id": "p2", "prompt": "b"}', '{"id": "p3", "prompt": '],
               "prompts.jsonl")
    with pytest.raises(DataError, match=r"prompts\.jsonl:3: malformed JSON"):
        read_jsonl(p, Prompt)


def test_invalid_utf8(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_bytes(b'{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"f\.jsonl:2: invalid UTF-8"):
        read_jsonl(p, Prompt)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        read_jsonl(_write(tmp_path, [""]), Prompt)
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl", Prompt)


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "x.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "x.jsonl"
    write_jsonl(target, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_file(target) as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert target.read_text() == '{"a": 1}\n'


def test_atomic_dir(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "weights").write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as d:
        (d / "weights").write_text("full")
    assert (target / "weights").read_text() == "full"
