"""Small statistics used by the metrics: means with standard errors, win rates, binned agreement."""

from __future__ import annotations

import math


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
