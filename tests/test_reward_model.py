"""The `rm` labeler: a reward model from a causal LM, trained with TRL's RewardTrainer, scoring D_u pairs."""

from __future__ import annotations

import pytest
import torch

from weakalign.config.params import Reward
from weakalign.labelers.reward_model import score_pairs, train
from weakalign.modeling.models import reward_model_from_lm
from weakalign.records import resume

# A preference anyone can learn from a handful of pairs: the chosen response is praise, the rejected one a complaint.
TRIPLES = [(f"Review item {i}.", f"Great item {i}, I love it, works well.", f"Bad item {i}, broke, awful.")
           for i in range(12)]
HELD_OUT = [(f"Review thing {i}.", f"Great thing {i}, I love it, works well.", f"Bad thing {i}, broke, awful.")
            for i in range(100, 108)]


def _cfg(**kw) -> Reward:
    return Reward(**{"learning_rate": 3e-3, "num_train_epochs": 4, "per_device_train_batch_size": 4,
                     "warmup_steps": 0, "logging_steps": 1, "bf16": False, "max_length": 96, "save_strategy": "no",
                     "activation_checkpointing": False, **kw})


def test_the_reward_model_starts_from_the_lm_with_a_seeded_head_and_a_real_pad_token(tiny_dir):
    a, tok = reward_model_from_lm(str(tiny_dir), seed=3)
    b, _ = reward_model_from_lm(str(tiny_dir), seed=3)
    c, _ = reward_model_from_lm(str(tiny_dir), seed=4)
    assert a.config.num_labels == 1 and tok.chat_template
    assert tok.pad_token_id != tok.eos_token_id and tok.padding_side == "right"
    assert a.config.pad_token_id == tok.pad_token_id
    torch.testing.assert_close(a.score.weight, b.score.weight)
    assert not torch.equal(a.score.weight, c.score.weight)
    # The body is the causal LM's: same embeddings for the tokens it had.
    from weakalign.modeling.models import load_model
    lm = load_model(tiny_dir)
    n = lm.get_input_embeddings().weight.shape[0]
    torch.testing.assert_close(a.get_input_embeddings().weight[:n], lm.get_input_embeddings().weight)


def test_training_learns_the_preference_and_labels_held_out_pairs(tiny_dir, tmp_path):
    model, tok = reward_model_from_lm(str(tiny_dir), seed=0)
    model, summary = train(model, tok, TRIPLES, _cfg(), seed=0, live_dir=tmp_path / "live",
                           work_dir=tmp_path / "work", model_id="tiny")
    assert summary["learned"] and summary["final_accuracy"] == 1.0, summary
    assert summary["n_train_pairs"] == 12 and summary["n_train_pairs_dropped_too_long"] == 0
    assert summary["steps"] == 12 and summary["train_tokens"] > 0
    assert (tmp_path / "live/plots/metrics/loss.tsv").is_file()  # the curve for dvc plots
    # Held-out pairs, each shown both ways round: the reward model picks the praise every time.
    rows = HELD_OUT + [(p, b, a) for p, a, b in HELD_OUT]
    r1, r2, n_tokens = score_pairs(model, tok, rows, batch_size=5, max_length=96)
    picks = [1 if a > b else 2 for a, b in zip(r1, r2, strict=True)]
    assert picks == [1] * len(HELD_OUT) + [2] * len(HELD_OUT)
    assert n_tokens > 0


def test_scoring_tokenizes_as_training_does_and_does_not_depend_on_the_batch(tiny_dir, tmp_path):
    """Our scores equal the model's output on the rows RewardTrainer itself tokenized and collated, so D_u is
    scored exactly as D_l was trained; and batch size 1 vs 5 changes nothing."""
    from trl import RewardTrainer

    from weakalign.labelers.reward_model import reward_config
    from weakalign.training.dpo import preference_dataset

    model, tok = reward_model_from_lm(str(tiny_dir), seed=0)
    model.eval()
    trainer = RewardTrainer(model=model, args=reward_config(_cfg(), 0, str(tmp_path)),
                            train_dataset=preference_dataset(TRIPLES[:5]), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(5)])
    with torch.no_grad():
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].tolist()
    r1, r2, _ = score_pairs(model, tok, TRIPLES[:5], batch_size=1, max_length=96)
    assert r1 + r2 == pytest.approx(theirs, abs=1e-5)  # the collator puts all chosen first, then all rejected
    b1, b2, _ = score_pairs(model, tok, TRIPLES[:5], batch_size=5, max_length=96)
    assert b1 + b2 == pytest.approx(r1 + r2, abs=1e-5)


class _Killed(Exception):
    pass


def test_a_killed_reward_model_run_resumes_with_the_same_weights(tiny_dir, tmp_path, monkeypatch):
    cfg = _cfg(max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=1)

    def run(tag):
        model, tok = reward_model_from_lm(str(tiny_dir), seed=0)
        return train(model, tok, TRIPLES, cfg, seed=0, live_dir=tmp_path / tag / "live",
                     work_dir=tmp_path / tag / "work", model_id="tiny")

    whole, whole_summary = run("whole")
    calls = {"n": 0}

    def crash():
        calls["n"] += 1
        if calls["n"] == 2:  # the step-4 checkpoint is on disk
            raise _Killed

    monkeypatch.setattr(resume, "crash_point", crash)
    with pytest.raises(_Killed):
        run("cut")
    monkeypatch.setattr(resume, "crash_point", lambda: None)
    resumed, resumed_summary = run("cut")
    assert resumed_summary["resumed_from_step"] == 4 and whole_summary["resumed_from_step"] is None
    assert resumed_summary["final_loss"] == pytest.approx(whole_summary["final_loss"], abs=1e-6)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    tsv = "plots/metrics/loss.tsv"
    assert (tmp_path / "cut/live" / tsv).read_text() == (tmp_path / "whole/live" / tsv).read_text()


def test_max_length_dropping_every_training_pair_is_an_error_naming_the_key(tiny_dir, tmp_path):
    model, tok = reward_model_from_lm(str(tiny_dir), seed=0)
    with pytest.raises(ValueError, match="label_rm.reward.max_length"):
        train(model, tok, TRIPLES, _cfg(max_length=8), seed=0, live_dir=tmp_path / "live",
              work_dir=tmp_path / "work", model_id="tiny")
