"""Resuming killed work: fingerprinted work folders, checkpoints cut short, and batch logs for sampling/labeling.

A killed labeling or sampling run must resume to exactly the results of an uninterrupted one. Kills are simulated
in-process by making `resume.crash_point` raise; tests/test_pipeline.py does it with SIGKILL inside `dvc repro`.
"""

from __future__ import annotations

import pytest

from weakalign.config.params import DPO
from weakalign.labelers.rewards import implicit_rewards
from weakalign.modeling.generation import sample
from weakalign.modeling.models import load_model, load_tokenizer
from weakalign.records import resume


class _Killed(Exception):
    pass


@pytest.fixture
def kill_after(monkeypatch):
    """kill_after(n): the n-th finished batch or checkpoint raises _Killed once it is on disk."""
    def arm(n: int):
        calls = {"n": 0}

        def crash():
            calls["n"] += 1
            if calls["n"] == n:
                raise _Killed

        monkeypatch.setattr(resume, "crash_point", crash)
    return arm


def test_work_folder_of_other_inputs_is_emptied(tmp_path):
    work = resume.prepare(tmp_path / "w", "key-a")
    (work / "checkpoint-3").mkdir()
    (work / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert resume.prepare(tmp_path / "w", "key-a") == work and resume.last_checkpoint(work).name == "checkpoint-3"
    work = resume.prepare(tmp_path / "w", "key-b")  # other params or data: start over
    assert resume.last_checkpoint(work) is None


def test_partial_results_of_other_code_are_not_resumed(tmp_path, monkeypatch):
    """Same inputs and params, but the pipeline's code (or a numerics library) changed since the kill: start over."""
    work = resume.prepare(tmp_path / "w", "key-a")
    (work / "batches.jsonl").write_text('{"batch": 0}\n')
    assert resume.prepare(tmp_path / "w", "key-a") == work and (work / "batches.jsonl").exists()
    monkeypatch.setattr(resume, "code_identity", lambda: "other code")
    work = resume.prepare(tmp_path / "w", "key-a")
    assert not (work / "batches.jsonl").exists()


def test_the_code_identity_covers_the_pipeline_modules_the_stage_script_and_the_libraries(tmp_path, monkeypatch):
    import sys

    script = tmp_path / "stage.py"
    script.write_text("print(1)\n")
    monkeypatch.setattr(sys, "argv", [str(script)])
    resume.code_identity.cache_clear()
    a = resume.code_identity()
    script.write_text("print(2)\n")
    resume.code_identity.cache_clear()
    assert resume.code_identity() != a
    resume.code_identity.cache_clear()


def test_a_checkpoint_cut_short_is_skipped(tmp_path):
    for step, state in ((2, "{}"), (4, '{"log_hist')):  # checkpoint-4 was being written when the kill came
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-6").mkdir()  # the model was being written: no state file yet
    assert resume.last_checkpoint(tmp_path).name == "checkpoint-2"


def test_batch_log_drops_a_torn_last_line(tmp_path):
    log = resume.BatchLog(tmp_path / "b.jsonl")
    log.add(0, [1.5, 2.5])
    log.add(1, ["x", "y"])
    log.close()
    with (tmp_path / "b.jsonl").open("a") as f:
        f.write('{"batch": 2, "result": [0.')  # the kill came mid-write
    again = resume.BatchLog(tmp_path / "b.jsonl")
    assert again.done == {0: [1.5, 2.5], 1: ["x", "y"]}
    again.add(2, [3.0])
    again.close()
    assert resume.BatchLog(tmp_path / "b.jsonl").done == {0: [1.5, 2.5], 1: ["x", "y"], 2: [3.0]}


def test_fingerprint_and_files_digest(tmp_path):
    assert resume.fingerprint({"a": 1, "b": 2}) == resume.fingerprint({"b": 2, "a": 1})
    assert resume.fingerprint([1]) != resume.fingerprint([2])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"1234")
    before = resume.files_digest(tmp_path / "m")
    (tmp_path / "m" / "w.bin").write_bytes(b"12345")
    assert resume.files_digest(tmp_path / "m") != before
    assert resume.files_digest("tiny-random") == resume.files_digest("tiny-random")


TRIPLES = [(f"Prompt number {i} " + "word " * (i % 5), f"Answer {i} " + "yes " * (i % 7), f"Other {i}.")
           for i in range(10)]


def test_labeling_resumes_to_the_same_rewards(tiny_dir, tmp_path, kill_after):
    from weakalign.modeling.models import TINY

    tok, policy, ref = load_tokenizer(tiny_dir), load_model(tiny_dir), load_model(TINY, seed=1)
    cfg = DPO(beta=0.1, bf16=True, max_length=64, precompute_ref_log_probs=False)
    whole = implicit_rewards(policy, ref, tok, TRIPLES, cfg, batch_size=3)  # 4 batches
    kill_after(2)
    with pytest.raises(_Killed):
        implicit_rewards(policy, ref, tok, TRIPLES, cfg, 3, partial=resume.BatchLog(tmp_path / "r.jsonl"))
    partial = resume.BatchLog(tmp_path / "r.jsonl")
    assert sorted(partial.done) == [0, 1]
    kill_after(0)
    assert implicit_rewards(policy, ref, tok, TRIPLES, cfg, 3, partial=partial) == whole


def test_sampling_resumes_to_the_same_texts(tiny_dir, tmp_path, kill_after, section):
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    gen = section("evaluate", max_new_tokens=6, batch_size=3)
    prompts = [p for p, _, _ in TRIPLES]
    whole = sample(model, tok, prompts, gen, seed=5, n_samples=2)
    kill_after(3)
    with pytest.raises(_Killed):
        sample(model, tok, prompts, gen, seed=5, n_samples=2, partial=resume.BatchLog(tmp_path / "s.jsonl"))
    kill_after(0)
    partial = resume.BatchLog(tmp_path / "s.jsonl")
    assert len(partial.done) == 3
    assert sample(model, tok, prompts, gen, seed=5, n_samples=2, partial=partial) == whole
