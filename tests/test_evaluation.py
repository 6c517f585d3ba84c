"""Alignment metrics: means, standard errors, paired gains and win rates."""

import math

import pytest

from weakalign.evaluation import alignment_metrics
from weakalign.stats import mean_sem, quantile_bins, win_rate


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
    assert set(m) == {"base", "human", "weak", "weak_vs_human_win_rate"}
    for k in ("gold_reward_mean", "gold_reward_sem", "n_prompts", "mean_words"):
        assert k in m["base"]
    assert "win_rate_vs_base" not in m["base"]
    assert m["human"]["win_rate_vs_base"] == 1.0
    assert m["human"]["gain_vs_base"] == pytest.approx(0.225)
    assert m["weak"]["win_rate_vs_base"] == pytest.approx((1 + 0.5 + 1 + 0.5) / 4)
    assert m["weak_vs_human_win_rate"] == pytest.approx((0 + 0 + 1 + 0) / 4)
