"""Alignment metrics: means, standard errors, paired gains and win rates."""

import math

import pytest

from weakalign.analysis.evaluation import alignment_metrics
from weakalign.analysis.stats import mean_sem, quantile_bins, win_rate


def test_mean_sem():
    m, se = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx(math.sqrt(1.6667 / 4), rel=1e-3)
    assert mean_sem([5.0]) == (5.0, 0.0)


def test_win_rate_counts_ties_half():
    assert win_rate([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_quantile_bins_cover_everything_once():
    bins = quantile_bins([5, 1, 4, 2, 3, 0, 9], 3)
    assert sorted(i for b in bins for i in b) == list(range(7))


def test_alignment_metrics_keys_and_paired_gain():
    scores = {"base": [0.0, 0.1, 0.2, 0.3], "human": [0.2, 0.3, 0.4, 0.6], "weak": [0.1, 0.1, 0.5, 0.3]}
    words = {k: [10, 12, 14, 16] for k in scores}
    m = alignment_metrics(scores, words)
    assert set(m) == {"base", "human", "weak", "weak_vs_human_win_rate", "head_to_head"}
    for k in ("gold_reward_mean", "gold_reward_sem", "n_prompts", "mean_words"):
        assert k in m["base"]
    assert "win_rate_vs_base" not in m["base"]
    assert m["human"]["win_rate_vs_base"] == 1.0
    assert m["human"]["gain_vs_base"] == pytest.approx(0.225)
    assert m["weak"]["win_rate_vs_base"] == pytest.approx((1 + 0.5 + 1 + 0.5) / 4)
    assert m["weak_vs_human_win_rate"] == pytest.approx((0 + 0 + 1 + 0) / 4)


def test_head_to_head_and_length_matched_win_rates():
    scores = {"base": [0.0, 0.1, 0.2, 0.3], "human": [0.2, 0.3, 0.4, 0.6], "weak": [0.1, 0.1, 0.5, 0.3]}
    words = {"base": [10, 10, 10, 10], "human": [10, 11, 30, 40], "weak": [10, 10, 10, 10]}
    m = alignment_metrics(scores, words)
    h = m["head_to_head"]["human_vs_weak"]
    # human vs weak per prompt: win, win, loss, win -> 0.75; normal interval over the outcomes (1, 1, 0, 1)
    assert h["win_rate"] == 0.75 and h["n_prompts"] == 4
    se = (sum((x - 0.75) ** 2 for x in (1, 1, 0, 1)) / 3 / 4) ** 0.5
    assert (h["lo"], h["hi"]) == (round(0.75 - 1.96 * se, 4), 1.0)  # clipped at 1
    # Length-matched (within 20%): human's first two prompts only, both wins over the base.
    assert m["human"]["n_length_matched"] == 2 and m["human"]["win_rate_vs_base_length_matched"] == 1.0
    assert m["weak"]["n_length_matched"] == 4
    assert m["human"]["win_rate_vs_base_lo"] <= 1.0 == m["human"]["win_rate_vs_base_hi"]


def test_no_gold_judge_keeps_every_key_with_nulls():
    words = {"base": [10, 12], "human": [10, 11], "weak": [9, 9]}
    with_gold = alignment_metrics({"base": [0.0, 0.1], "human": [0.2, 0.3], "weak": [0.1, 0.1]}, words)
    without = alignment_metrics({"base": None, "human": None, "weak": None}, words)
    assert set(without) == set(with_gold)
    for name in ("base", "human", "weak"):
        assert set(without[name]) == set(with_gold[name])
    assert set(without["head_to_head"]) == set(with_gold["head_to_head"]) == {"human_vs_weak"}
    assert without["head_to_head"]["human_vs_weak"]["win_rate"] is None


def test_heldout_accuracy_and_kl_estimate_by_hand():
    from weakalign.analysis.evaluation import heldout_metrics, heldout_pairs, kl_metrics
    from weakalign.records.schema import Pair

    # Implicit-reward margins +1, -1, 0 (a tie), +2 against gold 1, 1, 2, 2: right, wrong, one half, wrong.
    assert heldout_metrics([1.0, 0.0, 0.5, 3.0], [0.0, 1.0, 0.5, 1.0], [1, 1, 2, 2]) == \
        {"heldout_accuracy": 0.375, "heldout_pairs": 4}
    assert heldout_metrics([], [], []) == {"heldout_accuracy": None, "heldout_pairs": 0}
    pairs = [Pair(id=f"x{i}", prompt_id=f"x{i}", prompt="p", response_1="a", response_2="b",
                  gold_1=float(i % 3 != 0), gold_2=0.0 if i % 3 else 0.0) for i in range(30)]
    decided = [p for p in pairs if p.gold is not None]
    picked = heldout_pairs(pairs, 5, seed=0)
    assert len(picked) == 5 and all(p.gold is not None for p in picked)
    assert picked == heldout_pairs(pairs, 5, seed=0) != heldout_pairs(pairs, 5, seed=1)
    assert heldout_pairs(pairs, 100, seed=0) == decided
    # KL(target || start) from the target's own samples; KL(start || target) from the base's, negated.
    m = kl_metrics([0.5, 1.5], [-1.0, -3.0])
    assert m["kl_estimate"] == 1.0 and m["kl_estimate_sem"] == 0.5 and m["reverse_kl_estimate"] == 2.0
