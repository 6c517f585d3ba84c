"""Small statistics used by the metrics: means with standard errors, win rates, binned agreement; and, over the
seeds of a study, t-intervals, paired contrasts, equivalence tests, Holm adjustment, PGR and rank correlation."""

from __future__ import annotations

import math
import statistics
from typing import Any


def mean_sem(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def win_rate(a: list[float], b: list[float]) -> float:
    """Share of prompts where a's score beats b's, ties counting one half."""
    if len(a) != len(b) or not a:
        raise ValueError("win_rate needs two equally long, non-empty score lists")
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)) / len(a)


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a share hits / n (sound for small n and shares near 0 or 1); None for n = 0."""
    if n == 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def win_rate_ci(a: list[float], b: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Win rate of a over b on the same prompts (ties one half) with a 95% normal interval over the prompts'
    outcomes (1, 0.5, 0), clipped to [0, 1]."""
    outcomes = [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)]
    m, se = mean_sem(outcomes)
    return m, max(0.0, m - z * se), min(1.0, m + z * se)


def quantile_bins(values: list[float], n_bins: int) -> list[list[int]]:
    """Indices of `values` grouped into up to `n_bins` bins of (nearly) equal count, by ascending value."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    n_bins = max(1, min(n_bins, len(order)))
    return [order[len(order) * b // n_bins: len(order) * (b + 1) // n_bins] for b in range(n_bins)]


def r(x: float | None, nd: int = 4) -> float | None:
    """Round for the metrics files (stable diffs); None and NaN become None."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), nd)


# Multi-seed study statistics: the unit of analysis is a training run (seed). Each function below drops None and
# NaN entries (a missing run) before computing; paired functions drop the whole pair (seed). scipy is imported in
# the functions so that `import weakalign.analysis.stats` stays fast for the metric stages.


def _present(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _clean(xs: list[float | None]) -> list[float]:
    return [float(x) for x in xs if _present(x)]


def _pairs(a: list[float | None], b: list[float | None]) -> tuple[list[float], list[float]]:
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} and {len(b)}")
    kept = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if _present(x) and _present(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def t_interval(xs: list[float | None], conf: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(mean, lo, hi): mean over seeds and its two-sided `conf` Student-t interval, df = n - 1 (exact quantile).

    None and NaN entries are dropped. n = 0 gives (None, None, None); n = 1 gives (x, None, None); equal values
    give a zero-width interval (m, m, m)."""
    from scipy import stats

    if not 0 < conf < 1:
        raise ValueError(f"conf must lie in (0, 1), got {conf}")
    xs = _clean(xs)
    n = len(xs)
    if n == 0:
        return None, None, None
    m = float(statistics.mean(xs))  # exact fractions: equal values give sd 0.0, not 1e-17
    if n == 1:
        return m, None, None
    half = float(stats.t.ppf((1 + conf) / 2, n - 1)) * statistics.stdev(xs) / math.sqrt(n)
    return m, m - half, m + half


def paired_contrast(a: list[float | None], b: list[float | None], conf: float = 0.95) -> dict[str, float | int | None]:
    """Per-seed differences a_i - b_i (same seed, same prompts): {mean, lo, hi, p, n}.

    mean, lo, hi: t_interval of the differences; p: two-sided paired t-test of mean difference 0 (df = n - 1).
    A seed with None/NaN in either list is dropped; unequal lengths raise ValueError. p is None below 2 seeds;
    with zero variance it is 0.0 if the mean difference is nonzero, else 1.0."""
    from scipy import stats

    xs, ys = _pairs(a, b)
    diffs = [x - y for x, y in zip(xs, ys, strict=True)]
    mean, lo, hi = t_interval(diffs, conf)
    n = len(diffs)
    if n < 2:
        p = None
    elif statistics.stdev(diffs) == 0:
        p = 0.0 if mean != 0 else 1.0
    else:
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return {"mean": mean, "lo": lo, "hi": hi, "p": p, "n": n}


def tost_paired(diffs: list[float | None], margin: float, alpha: float = 0.05) -> dict[str, Any]:
    """Equivalence of the mean paired difference within (-margin, +margin) by two one-sided t-tests (df = n - 1).

    Returns {mean, lo, hi, p, p_lower, p_upper, n, equivalent}: p_lower tests H0 mean <= -margin, p_upper tests
    H0 mean >= +margin, p = max of the two, equivalent = p < alpha. lo, hi: the 1 - 2 alpha t-interval (90% for
    alpha 0.05), which lies strictly inside (-margin, +margin) exactly when equivalent. margin 0 never gives
    equivalence (p >= 0.5). None/NaN are dropped; below 2 differences p, lo, hi are None and equivalent is False.
    With zero variance p is 0.0 if |mean| < margin, else 1.0. margin < 0 or alpha outside (0, 0.5) raise ValueError."""
    from scipy import stats

    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    xs = _clean(diffs)
    n = len(xs)
    mean, lo, hi = t_interval(xs, 1 - 2 * alpha)
    if n < 2:
        p_lower = p_upper = None
    elif statistics.stdev(xs) == 0:
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
    else:
        p_lower = float(stats.ttest_1samp(xs, -margin, alternative="greater").pvalue)
        p_upper = float(stats.ttest_1samp(xs, margin, alternative="less").pvalue)
    p = None if p_lower is None else max(p_lower, p_upper)
    return {"mean": mean, "lo": lo, "hi": hi, "p": p, "p_lower": p_lower, "p_upper": p_upper, "n": n,
            "equivalent": p is not None and p < alpha}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order: the k-th smallest of m becomes
    max over j <= k of min(1, (m - j + 1) p_(j)). None and NaN entries come back unchanged and are not counted in m."""
    idx = [i for i, p in enumerate(pvalues) if _present(p)]
    if any(not 0 <= pvalues[i] <= 1 for i in idx):
        raise ValueError(f"p-values must lie in [0, 1]: {pvalues}")
    out = list(pvalues)
    running = 0.0
    for k, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (len(idx) - k) * pvalues[i]))
        out[i] = running
    return out


def pgr(r_weak: list[float | None], r_base: list[float | None], r_ceiling: list[float | None],
        conf: float = 0.95) -> dict[str, Any]:
    """Performance gap recovered (Burns et al. 2023): mean(R_weak - R_base) / mean(R_ceiling - R_base) over seeds.

    The ratio of mean per-seed gains (not the mean of per-seed ratios, unstable near a zero gap), with its `conf`
    Fieller interval for paired data: the ratios rho with (g - rho d)^2 <= t^2 (v_g - 2 rho c + rho^2 v_d), g, d the
    mean numerator and denominator gains, v_g, v_d, c the variances and covariance of those means (sample values / n),
    t the Student quantile with n - 1 df. Returns {pgr, lo, hi, n, num, den, bounded, reason}: num, den the mean
    gains. The set is bounded only when den's t-interval excludes 0; otherwise (or below 2 seeds) lo and hi are None,
    bounded is False and reason says why. A seed with None/NaN in any list is dropped."""
    from scipy import stats

    if not len(r_weak) == len(r_base) == len(r_ceiling):
        raise ValueError(f"pgr needs three equally long lists, got {len(r_weak)}, {len(r_base)}, {len(r_ceiling)}")
    seeds = [(float(w), float(b), float(c)) for w, b, c in zip(r_weak, r_base, r_ceiling, strict=True)
             if _present(w) and _present(b) and _present(c)]
    gs = [w - b for w, b, _ in seeds]
    ds = [c - b for _, b, c in seeds]
    n = len(seeds)
    out: dict[str, Any] = {"pgr": None, "lo": None, "hi": None, "n": n, "num": None, "den": None,
                           "bounded": False, "reason": None}
    if n == 0:
        return out | {"reason": "no seeds"}
    g, d = float(statistics.mean(gs)), float(statistics.mean(ds))
    out |= {"num": g, "den": d, "pgr": g / d if d != 0 else None}
    if d == 0:
        return out | {"reason": "mean ceiling gain is 0"}
    if n < 2:
        return out | {"reason": "fewer than 2 seeds: no interval"}
    t = float(stats.t.ppf((1 + conf) / 2, n - 1))
    v_g, v_d, c = statistics.variance(gs) / n, statistics.variance(ds) / n, statistics.covariance(gs, ds) / n
    # (g - rho d)^2 - t^2 (v_g - 2 rho c + rho^2 v_d) <= 0  <=>  A rho^2 - 2 B rho + C <= 0
    qa, qb, qc = d * d - t * t * v_d, g * d - t * t * c, g * g - t * t * v_g
    if qa <= 0:
        return out | {"reason": "denominator interval includes 0: Fieller set unbounded"}
    root = math.sqrt(max(0.0, qb * qb - qa * qc))  # >= 0 when qa > 0: the estimate g / d lies in the set
    return out | {"lo": (qb - root) / qa, "hi": (qb + root) / qa, "bounded": True}


def spearman(x: list[float | None], y: list[float | None]) -> tuple[float, float] | None:
    """(rho, p): Spearman rank correlation (ties get mean ranks) and its two-sided p-value (scipy.stats.spearmanr,
    t approximation with n - 2 df). Pairs with None/NaN are dropped; None below 3 pairs or when either side is
    constant. Unequal lengths raise ValueError."""
    from scipy import stats

    xs, ys = _pairs(x, y)
    if len(xs) < 3 or len(set(xs)) == 1 or len(set(ys)) == 1:
        return None
    res = stats.spearmanr(xs, ys)
    return float(res.statistic), float(res.pvalue)
