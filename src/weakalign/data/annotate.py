"""Simulated human annotators: noisy Bradley-Terry choices on the gold judge's scores.

P(response_1 preferred) = sigmoid((g1 - g2 + length_bias * (words_1 - words_2) / 100) / tau). Each pair's draw is
seeded by (seed, pair id), so a pair's label does not depend on which other pairs are in the file.
"""

from __future__ import annotations

import math
import random

from weakalign.config.params import Annotate
from weakalign.records.schema import Pair


def p_first(g1: float, g2: float, w1: int, w2: int, params: Annotate) -> float:
    z = (g1 - g2 + params.length_bias * (w1 - w2) / 100) / params.tau
    return 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))


def human_label(pair: Pair, params: Annotate, seed: int) -> int:
    if pair.gold_1 is None or pair.gold_2 is None:
        raise ValueError(f"pair {pair.id}: annotators need gold scores")
    p = p_first(pair.gold_1, pair.gold_2, len(pair.response_1.split()), len(pair.response_2.split()), params)
    return 1 if random.Random(f"{seed}:{pair.id}").random() < p else 2
