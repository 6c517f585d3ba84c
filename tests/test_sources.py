"""Data sources: every format and adapter on small fixtures (tests/fixtures/sources), counted drops, labels, config
validation, and the real HH-RLHF sample in ../shared/data through both the jsonl and the hf source."""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import shipped_section
from weakalign.config.params import Data
from weakalign.data.sources import detect, load_pairs, read_hh
from weakalign.records.io import DataError
from weakalign.records.schema import DROP_REASONS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sources"
HH_DIR = FIXTURES / "hh-rlhf"
HH_FILE = HH_DIR / "harmless-base" / "train.jsonl"
SFF_DIR = FIXTURES / "summarize_from_feedback"
# Real data beside the repository (../shared/data, see its README); never copied into it.
SHARED_HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test-part1.jsonl.gz"
DataSource = partial(shipped_section, "data")  # the shipped `data` section, with changes


@pytest.fixture(autouse=True)
def _offline_datasets(tmp_path_factory, monkeypatch):
    """Hub offline whatever the environment says, and the `datasets` cache out of the home directory."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    cache = tmp_path_factory.getbasetemp() / "hf_datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")


def _load(seed: int = 0, **cfg):
    return load_pairs(DataSource(**cfg), seed=seed)


def _drops(**nonzero: int) -> dict[str, int]:
    return dict.fromkeys(DROP_REASONS, 0) | nonzero


def _chosen(pair) -> str:
    return pair.response_1 if pair.human == 1 else pair.response_2


def _rejected(pair) -> str:
    return pair.response_2 if pair.human == 1 else pair.response_1


def _labels_follow_the_dataset(pairs) -> None:
    # Every fixture's preferred response starts with "good:" and the other with "bad:".
    for p in pairs:
        assert _chosen(p).startswith("good:") and _rejected(p).startswith("bad:"), p


# --- jsonl: standard form -------------------------------------------------------------------------------------


def test_jsonl_standard_counts_every_row_and_keeps_the_label():
    pairs, dropped = loaded = _load(source="jsonl", path=str(FIXTURES / "standard.jsonl"))
    assert [p.id for p in pairs] == ["pair-1", "pair-2", "pair-7", "pair-8"]  # line numbers; line 5 is blank
    assert dropped == _drops(empty_response=1, identical_responses=1, empty_prompt=1)
    assert loaded.n_rows == 7
    _labels_follow_the_dataset(pairs)
    assert pairs[0].prompt_id == pairs[1].prompt_id  # the same prompt up to case and spacing
    assert len({p.prompt_id for p in pairs}) == 3
    assert pairs[1].prompt == "what is a GOOD name   for a cat?"  # stripped, otherwise as written


def test_over_long_text_is_a_counted_drop(tmp_path):
    rows = [{"prompt": "Short question?", "chosen": "good: fine", "rejected": "bad: no"},
            {"prompt": "Long answer?", "chosen": "good: " + "x" * 20_000, "rejected": "bad: no"}]
    p = tmp_path / "long.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, dropped = _load(source="jsonl", path=str(p))
    assert len(pairs) == 1 and dropped == _drops(too_long=1)


def test_gzip_gives_the_same_pairs(tmp_path):
    gz = tmp_path / "standard.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write((FIXTURES / "standard.jsonl").read_bytes())
    assert _load(source="jsonl", path=str(gz)) == _load(source="jsonl", path=str(FIXTURES / "standard.jsonl"))


@pytest.mark.parametrize("name, message", [
    ("standard_malformed.jsonl", r"standard_malformed\.jsonl:2: malformed JSON"),
    ("standard_wrong_type.jsonl", r"standard_wrong_type\.jsonl:2: field 'chosen' must be a string, got list"),
])
def test_a_bad_row_is_an_error_naming_file_and_line(name, message):
    with pytest.raises(DataError, match=message):
        _load(source="jsonl", path=str(FIXTURES / name))


def test_max_rows_reads_only_the_first_rows():
    pairs, dropped = loaded = _load(source="jsonl", path=str(FIXTURES / "standard.jsonl"), max_rows=3)
    assert loaded.n_rows == 3 and [p.id for p in pairs] == ["pair-1", "pair-2"]
    assert dropped == _drops(empty_response=1)


def test_a_source_without_usable_rows_is_an_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"prompt": "Q?", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(DataError, match=r"no usable pairs in 1 rows \(dropped: identical_responses 1\)"):
        _load(source="jsonl", path=str(p))


# --- jsonl: HH dialogues, auto-detection, forced formats -------------------------------------------------------


def test_jsonl_hh_is_detected_and_matches_read_hh():
    pairs, dropped = _load(source="jsonl", path=str(HH_FILE), seed=3)
    assert [p.id for p in pairs] == ["hh-1", "hh-2", "hh-7"]
    assert dropped == _drops(no_assistant_turn=1, prompt_mismatch=1, empty_response=1, identical_responses=1,
                             empty_prompt=1)
    _labels_follow_the_dataset(pairs)
    assert pairs[0].prompt_id == pairs[2].prompt_id  # "How do I make tea?" twice, case and spacing aside
    assert (pairs, dropped) == read_hh(HH_FILE, seed=3)  # same ids, prompt ids and coins as the HH reader


def test_auto_detects_each_format_from_the_first_row():
    assert _load(source="jsonl", path=str(FIXTURES / "carper_comparisons.jsonl")).pairs[0].id.startswith("tldr-")
    assert _load(source="jsonl", path=str(SFF_DIR / "train.jsonl")).pairs[0].id.startswith("sff-")
    assert _load(source="jsonl", path=str(FIXTURES / "standard.jsonl")).pairs[0].id.startswith("pair-")
    assert _load(source="jsonl", path=str(HH_FILE)).pairs[0].id.startswith("hh-")


def test_a_forced_format_overrides_detection():
    # As plain standard rows, the carper summaries keep their "TL;DR:" prefix.
    pairs, _ = _load(source="jsonl", path=str(FIXTURES / "carper_comparisons.jsonl"), format="standard")
    assert _chosen(pairs[0]).startswith("TL;DR: good:")
    # Standard rows read as HH dialogues have no Assistant turn: every row is dropped, so nothing is usable.
    with pytest.raises(DataError, match="no_assistant_turn 7"):
        _load(source="jsonl", path=str(FIXTURES / "standard.jsonl"), format="hh")


@pytest.mark.parametrize("row, name, fmt", [
    ({"chosen": "x", "rejected": "y"}, "Anthropic/hh-rlhf", "hh"),
    ({"info": {}, "summaries": [], "choice": 0}, "openai/summarize_from_feedback", "summarize_from_feedback"),
    ({"prompt": "p", "chosen": "x", "rejected": "y"}, "CarperAI/openai_summarize_comparisons", "carper_comparisons"),
    ({"prompt": "p", "chosen": "TL;DR: x", "rejected": "TL;DR: y"}, "someone/tldr", "carper_comparisons"),
    ({"prompt": "p", "chosen": "x", "rejected": "y"}, "someone/prefs", "standard"),
    ({"prompt": "p", "chosen": "x", "rejected": "y"}, "trl-lib/hh-rlhf-helpful-base", "standard"),  # a mirror
    ({"chosen": "x", "rejected": "y"}, "ANTHROPIC/HH-RLHF", "hh"),
    ({"chosen": "x", "rejected": "y"}, None, "hh"),
    ({"info": {}, "summaries": [], "choice": 0, "worker": "w"}, None, "summarize_from_feedback"),
])
def test_detect_by_name_then_columns(row, name, fmt):
    assert detect(row, name) == fmt


def test_unknown_columns_are_an_error_that_says_what_to_set():
    with pytest.raises(DataError, match=r"generic\.jsonl:1: cannot tell the row format .*set `format`, or `columns`"):
        _load(source="jsonl", path=str(FIXTURES / "generic.jsonl"))


def test_summarize_with_a_bad_choice_is_an_error(tmp_path):
    row = json.loads((SFF_DIR / "train.jsonl").read_text().splitlines()[0]) | {"choice": 2}
    p = tmp_path / "sff.jsonl"
    p.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"sff\.jsonl:1: field 'choice' must be 0 or 1, got 2"):
        _load(source="jsonl", path=str(p), format="summarize_from_feedback")


# --- hf: the same code path as a Hub dataset, on local files and folders ---------------------------------------


def test_hf_hh_folder_with_data_dir_like_the_hub():
    pairs, dropped = _load(source="hf", name=str(HH_DIR), data_dir="harmless-base", seed=3)
    # Numbered from 1, so the same file gives the same pairs through hf and jsonl.
    assert (pairs, dropped) == _load(source="jsonl", path=str(HH_FILE), seed=3)


def test_hf_summarize_from_feedback():
    pairs, dropped = _load(source="hf", name=str(SFF_DIR))
    assert [p.id for p in pairs] == ["sff-1", "sff-2", "sff-3"]
    assert dropped == _drops(identical_responses=1, empty_response=1, empty_prompt=1)
    _labels_follow_the_dataset(pairs)  # choice 1, choice 0, choice 0
    assert pairs[0].prompt.startswith("SUBREDDIT: r/dogs\nTITLE: Puppy [4 months] chews everything\nPOST: I adopted")
    assert pairs[2].prompt == ("TITLE: Storm closes coastal roads\nARTICLE: A winter storm closed roads along the "
                               "coast on Monday, officials said.")  # a CNN/DM row: no subreddit, an article


def test_hf_carper_comparisons_strips_the_tldr_prefix():
    pairs, dropped = _load(source="hf", name=str(FIXTURES / "carper_comparisons.jsonl"))
    assert [p.id for p in pairs] == ["tldr-1", "tldr-2", "tldr-5"]
    assert dropped == _drops(empty_response=1, identical_responses=1)
    _labels_follow_the_dataset(pairs)
    assert _chosen(pairs[0]) == "good: First loaf came out flat, probably because of old yeast."


def test_hf_generic_dataset_with_a_column_mapping():
    columns = {"question": "prompt", "good": "chosen", "bad": "rejected"}
    pairs, dropped = _load(source="hf", name=str(FIXTURES / "generic.jsonl"), columns=columns)
    assert [p.id for p in pairs] == ["pair-1", "pair-2"] and dropped == _drops(empty_response=1)
    _labels_follow_the_dataset(pairs)
    assert pairs[0].prompt == "Give me a tip for sleeping better."


def test_hf_wrong_type_and_missing_column_name_the_row():
    name = str(FIXTURES / "generic.jsonl")
    with pytest.raises(DataError, match=r"generic\.jsonl \[train\] row 1: field 'prompt' must be a string, got int"):
        _load(source="hf", name=name, columns={"meta": "prompt", "good": "chosen", "bad": "rejected"})
    with pytest.raises(DataError, match=r"row 1: columns \['answer'\] of `columns` not in the row"):
        _load(source="hf", name=name, columns={"question": "prompt", "answer": "chosen", "bad": "rejected"})


def test_hf_max_rows_and_split_slices():
    name = str(FIXTURES / "carper_comparisons.jsonl")
    assert _load(source="hf", name=name, max_rows=2).n_rows == 2
    assert _load(source="hf", name=name, split="train[:3]").n_rows == 3


def test_hf_load_failures_are_data_errors_naming_the_dataset(tmp_path):
    with pytest.raises(DataError, match=r"carper_comparisons\.jsonl: cannot load .*split 'test'"):
        _load(source="hf", name=str(FIXTURES / "carper_comparisons.jsonl"), split="test")  # one file: train only
    with pytest.raises(DataError, match="no-such-org/no-such-dataset: cannot load"):
        _load(source="hf", name="no-such-org/no-such-dataset")  # the tests run offline: never reaches the Hub
    (tmp_path / "pairs.txt").write_text("prompt,chosen,rejected\n")
    with pytest.raises(DataError, match=r"pairs\.txt: unknown data file type '\.txt'"):
        _load(source="hf", name=str(tmp_path / "pairs.txt"))


def test_sandbox_is_not_loaded_here():
    with pytest.raises(ValueError, match="generated by the pipeline"):
        load_pairs(DataSource(), seed=0)


def test_no_module_of_the_package_imports_itself_through_others(root):
    """The import graph has no cycle (hh and sources once imported each other); imports inside functions count, and
    so do modules of one floor folder importing each other (tests/test_docs.py keeps the folders in order)."""
    import ast

    package = root / "src/weakalign"
    modules = {p.relative_to(package).with_suffix("").as_posix().replace("/", "."): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "weakalign":
                module = node.module.removeprefix("weakalign").lstrip(".")
                deps |= {m for m in [module, *(f"{module}.{a.name}".lstrip(".") for a in node.names)] if m in modules}
        graph[name] = deps
    assert len(graph) > 40 and graph["data.sources"] >= {"data.hh", "records.schema"}  # the graph is really read
    for start in graph:
        seen, todo = set(), set(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} is in an import cycle with some of {sorted(seen)}"
            if m not in seen:
                seen.add(m)
                todo |= graph.get(m, set())


# --- config validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg, message", [
    ({"source": "jsonl", "path": "pairs.csv"}, "path 'pairs.csv': expected a .jsonl or .jsonl.gz file"),
    ({"source": "jsonl", "path": "a.jsonl", "name": "x/y"}, "name belong to source 'hf'"),
    ({"source": "jsonl", "path": "a.jsonl", "split": "test"}, "split belong to source 'hf'"),
    ({"source": "hf"}, "source 'hf' needs `name`"),
    ({"source": "sandbox", "path": "prompts.txt"}, "the sandbox's prompts are a .jsonl file"),
    ({"name": "x/y", "format": "hh"}, "takes no name, format"),
    ({"source": "hf", "name": "x/y", "columns": {"a": "prompt", "b": "chosen"}}, "columns: must map .* `rejected`"),
    ({"source": "hf", "name": "x/y", "columns": {"a": "chosen", "b": "chosen", "c": "rejected"}}, "distinct roles"),
    ({"source": "hf", "name": "x/y", "columns": {"a": "answer", "b": "chosen", "c": "rejected"}}, "distinct roles"),
    ({"source": "hf", "name": "x/y", "format": "hh", "columns": {"a": "prompt", "b": "chosen", "c": "rejected"}},
     "columns: a mapping with `prompt` gives format 'standard', but format is 'hh'"),
    ({"source": "hf", "name": "x/y", "max_rows": 0}, "max_rows"),
    ({"source": "hf", "name": "x/y", "revision": "main"}, "revision"),  # unknown keys are rejected
    ({"source": "csv"}, "source"),
])
def test_config_errors_name_the_key(cfg, message):
    with pytest.raises(ValidationError, match=message):
        DataSource(**cfg)


def test_config_defaults_and_a_dump_round_trip():
    assert DataSource().source == "sandbox"
    cfg = DataSource(source="hf", name="Anthropic/hh-rlhf", data_dir="harmless-base", split="test[:100]")
    assert Data.model_validate(cfg.model_dump()) == cfg
    assert Data.model_validate(DataSource().model_dump()) == DataSource()  # defaults pass the sandbox check
    assert all(f.description for f in Data.model_fields.values())  # every key is documented


# --- the real HH-RLHF sample (../shared/data) ------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_HH.is_file(), reason=f"real HH-RLHF sample not found at {SHARED_HH}")
@pytest.mark.parametrize("source", ["jsonl", "hf"])
def test_every_row_of_the_shared_hh_file_is_accounted_for(source):
    cfg = {"path": str(SHARED_HH)} if source == "jsonl" else {"name": str(SHARED_HH)}
    pairs, dropped = loaded = _load(source=source, **cfg)
    assert loaded.n_rows == 1200
    assert len(pairs) == 1196 and dropped == _drops(empty_response=4)  # per hh.py: four rows end in an empty turn
    assert len({p.id for p in pairs}) == len(pairs)
    assert (pairs, dropped) == read_hh(SHARED_HH)
    assert 0.4 < sum(p.human == 1 for p in pairs) / len(pairs) < 0.6  # the coin places chosen first about half the time
