"""Bad input fails with the file and line; writes are atomic."""

from __future__ import annotations

import gzip
import json
import os
import stat

import pytest

from weakalign.records.io import (DataError, atomic_dir, atomic_file, iter_jsonl, read_json, read_jsonl, read_records,
                                  records_path, stage_outputs, write_json, write_jsonl, write_records)
from weakalign.records.schema import MAX_CHARS, Pair, Prompt

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



def test_a_records_folder_holds_its_rows_or_a_readme_never_an_empty_file(tmp_path):
    """An output a stage may leave without rows (a labeler that is off) is a folder, so DVC never finds it empty."""
    labels = tmp_path / "labels"
    write_records(labels, None, "No labels: the labeler is off.")
    assert [p.name for p in labels.iterdir()] == ["README.md"] and (labels / "README.md").stat().st_size > 0
    assert read_records(labels, Pair) is None and records_path(labels) is None
    write_records(labels, [Pair(**GOOD)])  # the stage switched on: the README goes, the rows come
    assert [p.name for p in labels.iterdir()] == ["records.jsonl"]
    assert read_records(labels, Pair) == [Pair(**GOOD)] and records_path(labels) == labels / "records.jsonl"
    assert read_records(_write(tmp_path, [json.dumps(GOOD)]), Pair) == [Pair(**GOOD)]  # a file given by hand
    with pytest.raises(ValueError, match="no README saying why"):
        write_records(tmp_path / "mute", None)
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match=r"bare: neither records\.jsonl nor README\.md"):
        read_records(tmp_path / "bare", Pair)
    (labels / "records.jsonl").write_text("")
    with pytest.raises(DataError, match=r"records\.jsonl: no rows"):
        read_records(labels, Pair)

# --- reliability, round 2 (issue 17): unreadable files, strict JSON, umask, and outputs that land together ---

def _err(path) -> str:
    with pytest.raises(DataError) as e:
        list(iter_jsonl(path))
    return str(e.value)


def test_unreadable_files_name_the_file_and_never_raise_raw(tmp_path):
    full = gzip.compress(b'{"a": 1}\n' * 1000)
    cases = {"plain.jsonl.gz": b'{"a": 1}\n', "truncated.jsonl.gz": full[: len(full) // 2],
             "corrupt.jsonl.gz": full[:30] + b"x" * 30 + full[60:]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        msg = _err(tmp_path / name)
        assert msg.startswith(f"{tmp_path / name}: not a readable gzip file"), msg
    assert _err(tmp_path) == f"{tmp_path}: is a directory, not a file"


@pytest.mark.parametrize("line, expect", [
    ('{"a": 1, "a": 2}', "malformed JSON (duplicate key 'a')"),
    ('{"a": NaN}', "malformed JSON (NaN is not a number JSON allows)"),
    ('{"a": -Infinity}', "malformed JSON (-Infinity is not a number JSON allows)"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "malformed JSON (nested too deep)"),
    ('{"a": ' + "9" * 5000 + "}", "malformed JSON (Exceeds the limit"),
])
def test_strict_json_rows(tmp_path, line, expect):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"ok": 1}\n' + line + "\n")
    assert _err(p).startswith(f"{p}:2: {expect}")


def test_nothing_non_finite_is_written(tmp_path):
    with pytest.raises(DataError, match="row 2 holds NaN or infinity"):
        write_jsonl(tmp_path / "x.jsonl", [{"a": 1.0}, {"a": float("nan")}])
    with pytest.raises(DataError, match="NaN or infinity"):
        write_json(tmp_path / "m.json", {"loss": float("inf")})
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        write_jsonl(tmp_path / "x.jsonl", [{"a": 1}])
        with atomic_dir(tmp_path / "model") as d:
            (d / "w").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.jsonl").stat().st_mode) == 0o640  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o750  # not mkdtemp's 0700


def test_a_stage_lands_all_its_outputs_or_none(tmp_path):
    with pytest.raises(RuntimeError), stage_outputs():
        with atomic_dir(tmp_path / "model") as d:
            (d / "w").write_text("1")
        write_json(tmp_path / "metrics.json", {"a": 1})
        assert not (tmp_path / "model").exists()  # held back until the stage's last write
        raise RuntimeError("the stage fails after saving its model")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with stage_outputs():
        write_json(tmp_path / "m.json", {"a": 1})
        write_json(tmp_path / "m.json", {"a": 2})
    assert read_json(tmp_path / "m.json") == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_an_output_that_cannot_be_written_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="a file stands where a folder of its path should be"):
        write_json(tmp_path / "file" / "m.json", {})
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(DataError, match="permission denied"):
            write_json(ro / "m.json", {})


def test_a_write_killed_with_sigkill_leaves_nothing_past_the_next_write(tmp_path):
    """SIGKILL while a model folder is being saved leaves its hidden temporary folder beside the target; the next
    write of that target removes it (and only its own leftovers: another output's temp and user files stay)."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "model"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from weakalign.records.io import atomic_dir\n"
        f"with atomic_dir({str(target)!r}) as d:\n"
        "    (d / 'weights.bin').write_bytes(b'x' * 1000)\n"
        "    print('saving', flush=True)\n"
        "    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "saving"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    leftovers = list(tmp_path.glob(".model.*.tmp"))
    assert len(leftovers) == 1 and (leftovers[0] / "weights.bin").is_file()  # what a kill leaves
    other = tmp_path / ".model2.abc.tmp"
    other.mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with atomic_dir(target) as d:
        (d / "weights.bin").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model2.abc.tmp", "model", "notes.txt"]
    with atomic_file(tmp_path / "m.json") as f:  # files too
        f.write("{}")
    (tmp_path / ".m.json.dead.tmp").write_text("half")
    with atomic_file(tmp_path / "m.json") as f:
        f.write("{}")
    assert not list(tmp_path.glob(".m.json.*"))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "prompts.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"prompts.jsonl: not a regular file \(a FIFO"):
        list(iter_jsonl(fifo))


def test_a_gzip_bomb_and_an_endless_line_are_refused_in_bounded_memory(tmp_path, monkeypatch):
    """A few MB of gzip that expand to one huge line, or to far more rows than the file could honestly hold: refused
    after reading at most the bound, never held whole. Bounds shrunk here so the test is fast."""
    import gzip

    from weakalign.records import io

    monkeypatch.setattr(io, "MAX_LINE_BYTES", 1000)
    line = tmp_path / "long.jsonl.gz"
    with gzip.open(line, "wb") as f:
        f.write(b'{"id": "a", "prompt": "' + b"x" * 100_000 + b'"}\n')
    with pytest.raises(DataError, match=r"long.jsonl.gz:1: a line over 0 MiB"):
        list(iter_jsonl(line))
    monkeypatch.setattr(io, "GZIP_RATIO_FROM", 10_000)
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(b'{"id": "a", "prompt": "same row"}\n' * 200_000)  # 6.8 MB of rows in about 30 kB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb.jsonl.gz: decompresses to over .* more than 100 times its size"):
        list(iter_jsonl(bomb))


def test_a_lone_surrogate_escape_names_the_input_file_and_line(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": "half \\ud800 a pair"}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:2: a lone surrogate escape \(\\ud800\) is not text"):
        list(iter_jsonl(p))
    p.write_text('{"id": "c", "prompt": "a whole pair \\ud83d\\ude00"}\n')
    assert [row["prompt"] for _, row in iter_jsonl(p)] == ["a whole pair \U0001f600"]
