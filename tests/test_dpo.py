"""The DPO wrapper: TRL does the training; we check the wiring, the dvclive curves and the `learned` flag."""

from __future__ import annotations

import pytest
import torch

from weakalign.config.params import DPO
from weakalign.modeling.models import load_model, load_tokenizer
from weakalign.records.schema import Pair
from weakalign.training import dpo

COUNTS = {"n_train_pairs": 4, "n_train_pairs_dropped_too_long": 0, "n_train_pairs_truncated": 0}


def _fit(loss, margin):
    return {"fit_loss": loss, "fit_accuracy": 0.5, "fit_margin": margin}


NOISY_TAIL = [{"loss": 0.71, "rewards/margins": 0.0, "step": i} for i in range(1, 9)]  # one epoch on noisy labels


@pytest.mark.parametrize("fit, learned", [
    (_fit(0.693147, 0.0), False),   # stuck at ln 2: the policy is still the reference
    (_fit(0.82, -0.1), False),      # worse than a coin on its own training pairs
    (_fit(0.69, 0.3), False),       # barely below ln 2
    (_fit(0.4, 1.2), True),
    (_fit(0.66, 0.12), True),       # fits its pairs though the unseen batches it logged stayed near ln 2
])
def test_learned_is_decided_on_the_trained_policys_own_pairs_not_the_logged_batches(fit, learned):
    s = dpo.summarize(NOISY_TAIL, {"train_runtime": 1.0}, COUNTS, fit)
    assert s["learned"] is learned
    assert s["steps"] == 8 and s["final_loss"] == 0.71 and s["fit_loss"] == fit["fit_loss"]


def test_mean_loss_weights_each_logged_loss_by_the_steps_it_covers():
    # logging_first_step, then every 3 steps: the entry at step 4 averages steps 2-4.
    history = [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 4}, {"loss": 0.2, "step": 7}]
    assert dpo.summarize(history, {}, COUNTS, _fit(0.5, 1.0))["train_loss_mean"] == pytest.approx(
        (1.0 + 3 * 0.5 + 3 * 0.2) / 7)


def test_triples_follow_the_choice():
    pairs = [Pair(id="a", prompt_id="a", prompt="p", response_1="one", response_2="two"),
             Pair(id="b", prompt_id="b", prompt="q", response_1="three", response_2="four")]
    assert dpo.triples(pairs, {"a": 2, "b": 1}) == [("p", "two", "one"), ("q", "three", "four")]
    assert dpo.triples(pairs, {"b": 2}) == [("q", "four", "three")]


def test_training_moves_the_tiny_model_and_logs_to_dvclive(tiny_dir, tmp_path, monkeypatch, caplog):
    secret = "hf_weakalignTestSecret0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)  # credentials come from the environment and must not leak into files
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    triples = [("Rate the film.", "A wonderful, warm and funny film.", "Dull."),
               ("Rate the soup.", "Delicious and hot, the best in town.", "Cold."),
               ("Rate the book.", "A gripping story I loved to the end. " * 6, "Boring."),
               ("Rate the phone.", "Fast, light and a joy to use.", "Broke.")]
    cfg = DPO(learning_rate=5e-3, max_steps=10, per_device_train_batch_size=4, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64)
    _, summary = dpo.train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live", work_dir=tmp_path / "work",
                           model_id="tiny")
    assert summary["learned"] and summary["final_loss"] < 0.6
    assert summary["fit_loss"] < 0.6 and summary["fit_accuracy"] == 1.0 and summary["fit_margin"] > 0.5
    # the fit point is a summary, not a training step: the dvclive curves end at the last step
    import csv

    with (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")][-1] == 10
    assert not list((tmp_path / "live").rglob("*fit*"))
    assert summary["n_train_pairs_truncated"] == 1  # the long third pair exceeds max_length=64
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "rewards" / "margins.tsv").is_file()
    from weakalign.records import resume

    # 10 steps, save_steps 16: no regular checkpoint, and the trainer's extra save after the last step is skipped.
    assert resume.last_checkpoint(tmp_path / "work") is None
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]
    assert secret not in caplog.text


class _Killed(Exception):
    pass


def test_a_run_that_cannot_move_scores_ln2_on_its_own_pairs_and_is_flagged(tiny_dir, tmp_path, caplog):
    """A learning rate of 1e-12: the trained policy is the reference, so its DPO loss on its own pairs is exactly ln 2 and
    its margins 0, whatever the logged batches said: the flag and its warning name it."""
    import math

    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    triples = [("Rate the film.", "A wonderful film.", "Dull."), ("Rate the soup.", "Delicious.", "Cold.")]
    cfg = DPO(learning_rate=1e-12, max_steps=2, per_device_train_batch_size=2, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64)
    _, summary = dpo.train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live", work_dir=tmp_path / "work",
                           model_id="tiny")
    assert summary["fit_loss"] == pytest.approx(math.log(2), abs=1e-5) and summary["fit_margin"] == pytest.approx(0, abs=1e-5)
    assert not summary["learned"] and "did not learn: on its own 2 training pairs" in caplog.text


def test_a_killed_run_resumes_from_its_checkpoint_with_the_same_result(tiny_dir, tmp_path, monkeypatch):
    """Stop training right after the step-4 checkpoint is on disk, rerun: same weights, losses and curves.

    (tests/test_pipeline.py does the same with a real SIGKILL inside `dvc repro`.)"""
    import torch

    from weakalign.records import resume

    tok = load_tokenizer(tiny_dir)
    triples = [(f"Rate item {i}.", f"Great item number {i}, I love it.", "Bad.") for i in range(8)]
    cfg = DPO(learning_rate=5e-3, max_steps=8, per_device_train_batch_size=2, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64, save_steps=2, save_total_limit=1)

    def run(tag):
        model, summary = dpo.train(load_model(tiny_dir), tok, triples, cfg, seed=0, live_dir=tmp_path / tag / "live",
                                   work_dir=tmp_path / tag / "work", model_id="tiny")
        return model, summary

    whole, whole_summary = run("whole")
    calls = {"n": 0}

    def crash():
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: step 4 of 8
            raise _Killed

    monkeypatch.setattr(resume, "crash_point", crash)
    with pytest.raises(_Killed):
        run("cut")
    assert resume.last_checkpoint(tmp_path / "cut" / "work").name == "checkpoint-4"
    monkeypatch.setattr(resume, "crash_point", lambda: None)
    resumed, resumed_summary = run("cut")

    assert resumed_summary["resumed_from_step"] == 4 and whole_summary["resumed_from_step"] is None
    for key in ("steps", "final_loss", "final_margin", "train_loss_mean", "learned"):
        assert resumed_summary[key] == pytest.approx(whole_summary[key], abs=1e-6), key
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    for curve in ("loss", "rewards/margins", "num_tokens", "learning_rate"):
        tsv = f"plots/metrics/{curve}.tsv"
        assert (tmp_path / "cut/live" / tsv).read_text() == (tmp_path / "whole/live" / tsv).read_text(), curve



def test_a_max_length_that_every_prompt_fills_fails_before_training(tiny_dir, tmp_path):
    long = [("word " * 60, "yes", "no"), ("other " * 60, "fine", "bad")]
    cfg = DPO(bf16=False, max_length=16, save_strategy="no", activation_checkpointing=False)
    with pytest.raises(ValueError, match="dpo.max_length 16: the prompt alone fills it in every one of the 2 pairs \\(the shortest prompt has"):
        dpo.train(load_model(tiny_dir), load_tokenizer(tiny_dir), long, cfg, 0, tmp_path / "live", tmp_path / "work",
                  "tiny")


def test_the_cpu_scoring_patch_still_fits_trl():
    """harness.score_completions_only replaces TRL's `_use_triton(device)`, which its fused LM head consults for one
    choice only: score hidden_states[mask] (compact) or every position. If TRL renames it, changes its signature or
    uses it for something else, the patch would be wrong or silently dead: this fails first."""
    import inspect

    import trl.trainer.utils as trl_utils

    from weakalign.training.harness import plain_trl, score_completions_only

    with plain_trl():
        original = trl_utils._use_triton
    assert list(inspect.signature(original).parameters) == ["device"]
    source = inspect.getsource(trl_utils)
    assert source.count("_use_triton(") == 1, "TRL consults _use_triton in more places than the patch assumes"
    assert "compact = _use_triton(hidden_states.device)" in source
    assert "hidden_states[mask] if compact else" in source and "labels[mask] if compact else" in source
    score_completions_only()
    if not torch.cuda.is_available():
        assert trl_utils._use_triton(torch.device("cpu")) is True
        with plain_trl():
            assert trl_utils._use_triton is original


@pytest.mark.parametrize("use_peft", [False, True])
def test_shared_reference_logps_equal_each_sources_own(tiny_dir, tmp_path, monkeypatch, use_peft):
    """The `reference` stage's log-probs, oriented by a source's labels, are the numbers TRL's trainer would
    precompute for that source itself (the same batches, with chosen and rejected swapped where the label says 2);
    and a training that gets them does not score D_u again."""
    from trl import DPOConfig, DPOTrainer

    from weakalign.config.params import Lora
    from weakalign.training.harness import trainer_kwargs

    tok = load_tokenizer(tiny_dir)
    pairs = [(f"Rate item {i}.", "Good. " * (1 + i % 4) + f"{i}", "Bad" + " really" * (i % 3) + f" {i}.")
             for i in range(11)]  # 11 pairs in batches of 4: a short last batch, and lengths that vary
    cfg = DPO(per_device_train_batch_size=4, max_length=64, max_steps=1, warmup_steps=0, bf16=True)
    lora = Lora(use_peft=use_peft, lora_target_modules=["q_proj", "v_proj"]) if use_peft else None
    shared = dpo.reference_logps(load_model(tiny_dir), tok, pairs, cfg, seed=0, lora=lora)
    labels = [1, 2, 2, 1, 2, 1, 1, 2, 2, 2, 1]
    oriented = [(p, a, b) if c == 1 else (p, b, a) for (p, a, b), c in zip(pairs, labels)]
    with __import__("tempfile").TemporaryDirectory() as tmp:
        own = DPOTrainer(model=load_model(tiny_dir), processing_class=tok,
                         args=DPOConfig(**{**trainer_kwargs(cfg, 0, tmp), "precompute_ref_log_probs": True}),
                         train_dataset=dpo.preference_dataset(oriented),
                         peft_config=dpo.lora_config(lora, "CAUSAL_LM") if lora else None).train_dataset
    expected = [r if c == 1 else r[::-1] for r, c in zip(shared, labels)]
    assert list(zip(own["ref_chosen_logps"], own["ref_rejected_logps"])) == expected
    assert all(a != b for a, b in shared)  # the two responses differ, so a swap would show

    def refuse(*args, **kwargs):
        raise AssertionError("the reference log-probs were computed again")

    monkeypatch.setattr(DPOTrainer, "_precompute_ref_logps", refuse)
    _, summary = dpo.train(load_model(tiny_dir), tok, oriented, cfg, seed=0, live_dir=tmp_path / "live",
                           work_dir=tmp_path / "work", model_id="tiny", lora=lora, ref_logps=expected)
    assert summary["steps"] == 1


def test_a_run_whose_batches_are_all_dropped_fails_instead_of_saving_the_start(tiny_dir, tmp_path):
    """A batch larger than the data with dataloader_drop_last, and max_steps set (else transformers itself refuses
    the empty dataloader): 0 optimizer steps. It used to exit 0 with the untrained model saved as the result."""
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    triples = [("Rate the film.", "A wonderful film.", "Dull."), ("Rate the soup.", "Delicious.", "Cold.")]
    cfg = DPO(per_device_train_batch_size=4, dataloader_drop_last=True, max_steps=5, bf16=False, max_length=64)
    with pytest.raises(ValueError, match=r"dpo: trained 0 optimizer steps on 2 examples \(batch size 4 x 1 processes, "
                                         r"dataloader_drop_last True\): lower the batch size"):
        dpo.train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live", work_dir=tmp_path / "work",
                  model_id="tiny")


def test_a_damaged_checkpoint_is_deleted_and_named_instead_of_failing_every_rerun(tiny_dir, tmp_path, monkeypatch):
    """The step-4 checkpoint's weights cut short after a kill: the resume fails in one line naming it and deletes it,
    so the next run starts over (there is no earlier one here) instead of failing on it forever."""
    from weakalign.records import resume

    tok = load_tokenizer(tiny_dir)
    triples = [(f"Rate item {i}.", f"Great item number {i}, I love it.", "Bad.") for i in range(8)]
    cfg = DPO(learning_rate=5e-3, max_steps=6, per_device_train_batch_size=2, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64, save_steps=4, save_total_limit=1)

    def run():
        return dpo.train(load_model(tiny_dir), tok, triples, cfg, seed=0, live_dir=tmp_path / "live",
                         work_dir=tmp_path / "work", model_id="tiny")

    def crash():
        raise _Killed

    monkeypatch.setattr(resume, "crash_point", crash)
    with pytest.raises(_Killed):
        run()
    ckpt = resume.last_checkpoint(tmp_path / "work")
    weights = next(ckpt.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.setattr(resume, "crash_point", lambda: None)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint-4 could not be resumed \(.*\); deleted it"):
        run()
    assert not ckpt.exists()
    _, summary = run()
    assert summary["steps"] == 6 and summary["resumed_from_step"] is None


def test_training_keeps_its_progress_bar_but_prints_no_dict_per_logged_step(tiny_dir, tmp_path, monkeypatch):
    """transformers' ProgressCallback writes every logged point as a dict of up to 500 characters under its bar;
    training keeps the bar (its other hooks) and drops those lines: the stock on_log is never reached."""
    from transformers.trainer_callback import ProgressCallback

    logged, steps = [], []
    monkeypatch.setattr(ProgressCallback, "on_log", lambda self, *a, **k: logged.append(k.get("logs")))
    stock_step_end = ProgressCallback.on_step_end
    monkeypatch.setattr(ProgressCallback, "on_step_end",
                        lambda self, *a, **k: (steps.append(1), stock_step_end(self, *a, **k))[1])
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    triples = [("Rate the film.", "A wonderful film.", "Dull."), ("Rate the soup.", "Delicious.", "Cold.")]
    cfg = DPO(max_steps=3, per_device_train_batch_size=2, logging_steps=1, bf16=False, max_length=64)
    dpo.train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live", work_dir=tmp_path / "work",
              model_id="tiny")
    assert logged == [] and len(steps) == 3  # no dict lines; the bar still advanced on each of the 3 steps
