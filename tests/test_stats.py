"""Multi-seed statistics of weakalign.analysis.stats against hand computations.

Student-t quantiles and CDFs come from closed forms where they exist: df 1 and 2 have closed-form quantiles,
t_{0.975}(1) = tan(0.475 pi) and t_{0.975}(2) = 0.95 / sqrt(2 * 0.975 * 0.025); the CDFs are
    F1(t) = 1/2 + atan(t) / pi,   F2(t) = 1/2 + t / (2 sqrt(2 + t^2)),
    F4(t) = 1/2 + 3/8 * t / sqrt(s) * (1 - t^2 / (12 s)) with s = 1 + t^2 / 4.
For df 4 the quantiles 2.776445 (0.975) and 2.131847 (0.95) are table values, checked here against F4.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from weakalign.analysis.stats import holm, paired_contrast, pgr, spearman, t_interval, tost_paired

NAN = float("nan")
T1 = math.tan(0.475 * math.pi)  # t_{0.975}, df 1
T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t_{0.975}, df 2
T4 = 2.776445  # t_{0.975}, df 4 (table)
T4_90 = 2.131847  # t_{0.95}, df 4 (table)


def _f1(t):
    return 0.5 + math.atan(t) / math.pi


def _f2(t):
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def _f4(t):
    s = 1 + t * t / 4
    return 0.5 + 3 / 8 * t / math.sqrt(s) * (1 - t * t / (12 * s))


def test_closed_form_t_quantiles():
    assert _f1(T1) == pytest.approx(0.975, abs=1e-12) and _f2(T2) == pytest.approx(0.975, abs=1e-12)
    assert _f4(T4) == pytest.approx(0.975, abs=1e-8) and _f4(T4_90) == pytest.approx(0.95, abs=1e-7)


# --- t_interval ------------------------------------------------------------------------------------------------

def test_t_interval_of_one_to_five():
    # mean 3, sd sqrt(10 / 4) = sqrt(2.5), se sqrt(2.5 / 5) = sqrt(0.5); half-width 2.776445 * 0.707107 = 1.963243
    m, lo, hi = t_interval([1, 2, 3, 4, 5])
    half = T4 * math.sqrt(0.5)
    assert m == 3.0 and half == pytest.approx(1.963243, abs=1e-6)
    assert lo == pytest.approx(3 - half, abs=1e-6) and hi == pytest.approx(3 + half, abs=1e-6)
    m, lo, hi = t_interval([1, 2, 3, 4, 5], conf=0.90)
    assert (lo, hi) == pytest.approx((3 - T4_90 * math.sqrt(0.5), 3 + T4_90 * math.sqrt(0.5)), abs=1e-6)


def test_t_interval_two_seeds_uses_df_one():
    # [1, 3]: mean 2, sd sqrt(2), se 1
    assert t_interval([1.0, 3.0]) == pytest.approx((2.0, 2.0 - T1, 2.0 + T1), abs=1e-9)


def test_t_interval_edge_cases():
    assert t_interval([]) == (None, None, None)
    assert t_interval([0.7]) == (0.7, None, None)
    assert t_interval([0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)  # zero variance: zero width, exactly
    assert t_interval([1.0, None, 3.0, NAN]) == t_interval([1.0, 3.0])  # missing runs dropped
    assert t_interval([None, NAN]) == (None, None, None)
    with pytest.raises(ValueError):
        t_interval([1.0, 2.0], conf=1.0)


# --- paired_contrast -------------------------------------------------------------------------------------------

def test_paired_contrast_hand_computation():
    # diffs [2, 3, 2]: mean 7/3, sd sqrt(((1/3)^2 * 2 + (2/3)^2) / 2) = sqrt(1/3), se 1/3, t = (7/3) / (1/3) = 7
    # two-sided p = 2 (1 - F2(7)) = 1 - 7 / sqrt(51)
    res = paired_contrast([3.0, 5.0, 4.0], [1.0, 2.0, 2.0])
    assert res["n"] == 3 and res["mean"] == pytest.approx(7 / 3, abs=1e-12)
    assert res["lo"] == pytest.approx(7 / 3 - T2 / 3, abs=1e-9) and res["hi"] == pytest.approx(7 / 3 + T2 / 3, abs=1e-9)
    assert res["p"] == pytest.approx(1 - 7 / math.sqrt(51), abs=1e-9)


def test_paired_contrast_agrees_with_ttest_rel():
    from scipy import stats

    a, b = [0.61, 0.55, 0.70, 0.58, 0.66], [0.57, 0.56, 0.62, 0.50, 0.64]
    assert paired_contrast(a, b)["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_paired_contrast_edge_cases():
    # A seed missing in either arm drops the pair: [3, 5, 4] vs [1, 2, 2] again.
    assert paired_contrast([3.0, 5.0, None, 4.0, 9.0], [1.0, 2.0, 8.0, 2.0, NAN]) == \
        paired_contrast([3.0, 5.0, 4.0], [1.0, 2.0, 2.0])
    assert paired_contrast([1.0], [0.5]) == {"mean": 0.5, "lo": None, "hi": None, "p": None, "n": 1}
    assert paired_contrast([], [])["n"] == 0
    assert paired_contrast([2.0, 3.0], [1.0, 2.0]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "p": 0.0, "n": 2}
    assert paired_contrast([2.0, 3.0], [2.0, 3.0])["p"] == 1.0
    # n = 2: diffs [1, 3], mean 2, se 1, t = 2, df 1: p = 2 (1 - F1(2))
    res = paired_contrast([1.0, 3.0], [0.0, 0.0])
    assert res["p"] == pytest.approx(2 * (1 - _f1(2.0)), abs=1e-12)
    assert (res["lo"], res["hi"]) == pytest.approx((2 - T1, 2 + T1), abs=1e-9)
    with pytest.raises(ValueError):
        paired_contrast([1.0, 2.0], [1.0])


# --- tost_paired -----------------------------------------------------------------------------------------------

DIFFS = [-0.1, 0.0, 0.1, 0.2, 0.3]  # mean 0.1, sd sqrt(0.1 / 4) = sqrt(0.025), se sqrt(0.005), df 4


def test_tost_worked_example():
    se = math.sqrt(0.005)
    # margin 0.3: t_lower = (0.1 + 0.3) / se = 4 sqrt(2), t_upper = (0.1 - 0.3) / se = -2 sqrt(2)
    res = tost_paired(DIFFS, 0.3)
    assert res["p_lower"] == pytest.approx(1 - _f4(4 * math.sqrt(2)), abs=1e-12)
    assert res["p_upper"] == pytest.approx(_f4(-2 * math.sqrt(2)), abs=1e-12)  # 0.0237
    assert res["p"] == res["p_upper"] and res["p"] == pytest.approx(0.023710, abs=1e-6) and res["equivalent"]
    # 90% interval 0.1 -+ 2.131847 * 0.070711 = (-0.050744, 0.250744), inside (-0.3, 0.3)
    assert res["lo"] == pytest.approx(0.1 - T4_90 * se, abs=1e-6)
    assert res["hi"] == pytest.approx(0.1 + T4_90 * se, abs=1e-6)
    assert res["n"] == 5 and res["mean"] == pytest.approx(0.1, abs=1e-12)
    # margin 0.2: t_upper = -0.1 / se = -sqrt(2): p = F4(-sqrt(2)) = 0.1151, not equivalent; hi 0.2507 > 0.2
    res = tost_paired(DIFFS, 0.2)
    assert res["p"] == pytest.approx(_f4(-math.sqrt(2)), abs=1e-12) and not res["equivalent"]
    assert res["hi"] > 0.2


def test_tost_equivalent_exactly_when_interval_inside_margin():
    for diffs in (DIFFS, [0.02, -0.01, 0.03, 0.0], [-0.4, 0.1, -0.2]):
        for k in range(1, 101):
            margin = k / 100
            res = tost_paired(diffs, margin)
            assert res["equivalent"] == (-margin < res["lo"] and res["hi"] < margin), (diffs, margin)


def test_tost_edge_cases():
    res = tost_paired(DIFFS, 0.0)  # margin 0: the two one-sided p-values sum to 1, never equivalence
    assert res["p"] >= 0.5 and not res["equivalent"]
    assert res["p_lower"] + res["p_upper"] == pytest.approx(1.0, abs=1e-12)
    assert not tost_paired([0.0, 0.0, 0.0], 0.0)["equivalent"]
    assert tost_paired([0.05, 0.05], 0.1) == {"mean": 0.05, "lo": 0.05, "hi": 0.05, "p": 0.0, "p_lower": 0.0,
                                              "p_upper": 0.0, "n": 2, "equivalent": True}
    assert tost_paired([0.2, 0.2], 0.1)["p"] == 1.0
    res = tost_paired([0.01, None, NAN], 0.1)
    assert res["n"] == 1 and res["p"] is None and res["lo"] is None and not res["equivalent"]
    with pytest.raises(ValueError):
        tost_paired(DIFFS, -0.1)


# --- holm ------------------------------------------------------------------------------------------------------

def test_holm_hand_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)


def test_holm_caps_ties_and_missing():
    assert holm([0.4, 0.3, 0.9]) == pytest.approx([0.9, 0.9, 0.9])  # 0.9, 0.8 -> 0.9, 0.9; capped at 1 below
    assert holm([0.6, 0.5]) == [1.0, 1.0]
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])
    out = holm([0.01, None, 0.04, NAN, 0.03])  # family of 3: 0.03, 0.06, 0.06
    assert out[0] == pytest.approx(0.03) and out[1] is None and out[2] == pytest.approx(0.06)
    assert math.isnan(out[3]) and out[4] == pytest.approx(0.06)
    assert holm([]) == [] and holm([None]) == [None]
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


def test_holm_is_monotone_and_never_below_raw():
    ps = [0.001, 0.2, 0.04, 0.04, 0.3, 0.011, 0.5, 0.0]
    adj = holm(ps)
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[i] <= adj[j] for i, j in zip(order, order[1:]))
    assert all(p <= q <= 1 for p, q in zip(ps, adj))


# --- pgr -------------------------------------------------------------------------------------------------------

BASE = [0.5, 1.0, 0.0]
WEAK = [b + g for b, g in zip(BASE, [1.0, 2.0, 3.0])]  # numerator gains g = [1, 2, 3]
CEIL = [b + d for b, d in zip(BASE, [4.0, 4.0, 5.0])]  # denominator gains d = [4, 4, 5]


def test_pgr_and_fieller_by_hand():
    # g: mean 2, var 1; d: mean 13/3, var ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3; cov ((-1)(-1/3) + 0 + (1)(2/3)) / 2 = 1/2
    # variances of the means (/ n = 3): v_g = 1/3, v_d = 1/9, c = 1/6; t = t_{0.975}(2)
    # (2 - r 13/3)^2 <= t^2 (1/3 - r/3 + r^2/9)  <=>  A r^2 - 2 B r + C <= 0 with
    a = 169 / 9 - T2 ** 2 / 9
    b = 26 / 3 - T2 ** 2 / 6
    c = 4 - T2 ** 2 / 3
    lo, hi = (b - math.sqrt(b * b - a * c)) / a, (b + math.sqrt(b * b - a * c)) / a
    res = pgr(WEAK, BASE, CEIL)
    assert res["pgr"] == pytest.approx(6 / 13, abs=1e-12) and res["num"] == pytest.approx(2.0) \
        and res["den"] == pytest.approx(13 / 3)
    assert res["bounded"] and res["reason"] is None and res["n"] == 3
    assert res["lo"] == pytest.approx(lo, abs=1e-9) and res["hi"] == pytest.approx(hi, abs=1e-9)
    assert res["lo"] == pytest.approx(-0.157383, abs=1e-6) and res["hi"] == pytest.approx(0.824959, abs=1e-6)
    for r in (res["lo"], res["hi"]):  # the endpoints solve the Fieller equality
        assert (2 - r * 13 / 3) ** 2 == pytest.approx(T2 ** 2 * (1 / 3 - r / 3 + r * r / 9), abs=1e-9)


def test_pgr_unbounded_when_the_gap_interval_includes_zero():
    # d = [1, -1, 0.5]: mean 1/6, se about 0.6 -> its t-interval includes 0
    res = pgr([1.0, 0.5, 0.2], [0.0, 0.0, 0.0], [1.0, -1.0, 0.5])
    assert res["pgr"] == pytest.approx((1.7 / 3) / (0.5 / 3)) and res["lo"] is None and res["hi"] is None
    assert not res["bounded"] and "unbounded" in res["reason"]


def test_pgr_edge_cases():
    res = pgr([2.0], [1.0], [3.0])
    assert res["pgr"] == 0.5 and res["lo"] is None and not res["bounded"] and "2 seeds" in res["reason"]
    res = pgr([1.0, 2.0], [0.0, 0.0], [1.0, -1.0])
    assert res["pgr"] is None and res["den"] == 0.0 and res["reason"] == "mean ceiling gain is 0"
    assert pgr([], [], [])["reason"] == "no seeds"
    # zero variance: the interval shrinks to the estimate
    res = pgr([0.5, 0.5], [0.0, 0.0], [1.0, 1.0])
    assert (res["pgr"], res["lo"], res["hi"], res["bounded"]) == (0.5, 0.5, 0.5, True)
    # a seed missing from any list is dropped
    assert pgr(WEAK + [None, 1.0], BASE + [0.0, NAN], CEIL + [1.0, 2.0]) == pgr(WEAK, BASE, CEIL)
    with pytest.raises(ValueError):
        pgr([1.0], [0.0, 0.0], [1.0])


# --- spearman --------------------------------------------------------------------------------------------------

def test_spearman_tied_example():
    # ranks x [1, 2.5, 2.5, 4], y [1, 3, 2, 4]; centred (-1.5, 0, 0, 1.5) and (-1.5, 0.5, -0.5, 1.5):
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9); t = rho sqrt(2 / (1 - 0.9)) = sqrt(18), df 2:
    # p = 2 (1 - F2(sqrt 18)) = 1 - sqrt(18 / 20) = 1 - sqrt(0.9)
    rho, p = spearman([1, 2, 2, 3], [1, 3, 2, 4])
    assert rho == pytest.approx(math.sqrt(0.9), abs=1e-12) and p == pytest.approx(1 - math.sqrt(0.9), abs=1e-12)


def test_spearman_edge_cases():
    assert spearman([1.0, 2.0], [2.0, 1.0]) is None
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) is None
    assert spearman([1.0, 2.0, None, 3.0], [1.0, 2.0, 3.0, NAN]) is None  # 2 pairs left
    assert spearman([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 45.0])[0] == pytest.approx(1.0)
    assert spearman([1.0, 2.0, None, 3.0, 4.0], [4.0, 3.0, 0.0, 2.0, 1.0])[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def test_import_stays_light():
    code = "import sys, weakalign.analysis.stats; assert 'torch' not in sys.modules and 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
