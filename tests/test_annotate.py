"""Simulated annotators: Bradley-Terry noise at the rate tau implies, seeded and order-independent."""

import math
import random
from functools import partial

from conftest import shipped_section
from weakalign.data.annotate import human_label, p_first
from weakalign.records.schema import Pair

_annotate = partial(shipped_section, "annotate")  # the shipped annotators, with changes


def _pairs(n, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        g1, g2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        out.append(Pair(id=f"x{i}", prompt_id=f"x{i}", prompt="p", response_1="one answer",
                        response_2="another answer", gold_1=g1, gold_2=g2))
    return out


def test_agreement_matches_tau_within_sampling_error():
    params = _annotate(tau=0.3)
    pairs = _pairs(4000)
    expected = [max(p_first(p.gold_1, p.gold_2, 2, 2, params), 1 - p_first(p.gold_1, p.gold_2, 2, 2, params))
                for p in pairs]
    agree = [human_label(p, params, seed=0) == p.gold for p in pairs]
    mean_expected = sum(expected) / len(expected)
    se = math.sqrt(sum(e * (1 - e) for e in expected)) / len(expected)
    assert abs(sum(agree) / len(agree) - mean_expected) < 4 * se


def test_smaller_tau_means_less_noise():
    pairs = _pairs(2000)
    sections = {t: _annotate(tau=t) for t in (0.05, 1.0)}  # once each: one reads params.yaml (57 s inside the loop)
    acc = {t: sum(human_label(p, a, 0) == p.gold for p in pairs) / len(pairs) for t, a in sections.items()}
    assert acc[0.05] > 0.9 > 0.7 > acc[1.0]


def test_labels_are_seeded_and_independent_of_order():
    params = _annotate()
    pairs = _pairs(200)
    a = {p.id: human_label(p, params, 0) for p in pairs}
    b = {p.id: human_label(p, params, 0) for p in reversed(pairs)}
    c = {p.id: human_label(p, params, 1) for p in pairs}
    assert a == b and a != c


def test_length_bias_favours_longer_responses():
    params = _annotate(tau=0.3, length_bias=1.0)
    assert p_first(0.0, 0.0, 60, 10, params) > 0.8
    assert p_first(0.0, 0.0, 10, 10, params) == 0.5
