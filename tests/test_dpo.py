"""The DPO wrapper: TRL does the training; we check the wiring, the dvclive curves and the `learned` flag."""

from __future__ import annotations

import pytest

from weakalign import dpo
from weakalign.models import load_model, load_tokenizer
from weakalign.params import DPO
from weakalign.schema import Pair

COUNTS = {"n_pairs_in": 4, "n_pairs_dropped_too_long": 0, "n_pairs_truncated": 0}


@pytest.mark.parametrize("history, learned", [
    ([{"loss": 0.6931, "rewards/margins": 0.0, "step": i} for i in range(8)], False),   # stuck at ln 2
    ([{"loss": 0.82, "rewards/margins": -0.1, "step": i} for i in range(8)], False),    # worse than a coin
    ([{"loss": 0.69, "rewards/margins": 0.3, "step": i} for i in range(8)], False),     # barely below ln 2
    ([{"loss": 0.4, "rewards/margins": 1.2, "step": i} for i in range(8)], True),
])
def test_learned_flag(history, learned):
    s = dpo.summarize(history, 0.5, {"train_runtime": 1.0}, COUNTS)
    assert s["learned"] is learned
    assert s["steps"] == 7


def test_triples_follow_the_choice():
    pairs = [Pair(id="a", prompt_id="a", prompt="p", response_1="one", response_2="two"),
             Pair(id="b", prompt_id="b", prompt="q", response_1="three", response_2="four")]
    assert dpo.triples(pairs, {"a": 2, "b": 1}) == [("p", "two", "one"), ("q", "three", "four")]
    assert dpo.triples(pairs, {"b": 2}) == [("q", "four", "three")]


def test_training_moves_the_tiny_model_and_logs_to_dvclive(tiny_dir, tmp_path):
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    triples = [("Rate the film.", "A wonderful, warm and funny film.", "Dull."),
               ("Rate the soup.", "Delicious and hot, the best in town.", "Cold."),
               ("Rate the book.", "A gripping story I loved to the end. " * 6, "Boring."),
               ("Rate the phone.", "Fast, light and a joy to use.", "Broke.")]
    cfg = DPO(learning_rate=5e-3, max_steps=10, per_device_train_batch_size=4, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64)
    _, summary = dpo.train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live")
    assert summary["learned"] and summary["final_loss"] < 0.6
    assert summary["n_pairs_truncated"] == 1  # the long third pair exceeds max_length=64
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "rewards" / "margins.tsv").is_file()
