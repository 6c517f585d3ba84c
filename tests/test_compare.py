"""Human-vs-weak comparison metrics and the per-source labels `align` trains on."""

import pytest

from weakalign.analysis.compare import feedback_labels, feedback_metrics
from weakalign.records.schema import Pair, WeakLabel


def _pair(i, gold, human):
    g1, g2 = (1.0, 0.0) if gold == 1 else (0.0, 1.0)
    return Pair(id=f"x{i}", prompt_id=f"x{i}", prompt="p", response_1="one", response_2="two", gold_1=g1, gold_2=g2,
                human=human)


def _weak(i, label, margin):
    return WeakLabel(pair_id=f"x{i}", reward_1=margin, reward_2=0.0, margin=margin, label=label)


def test_metrics_by_hand():
    # (gold, human, weak): 4 pairs. human correct on 3, weak correct on 2, agree on 1 (pair 0).
    rows = [(1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 1, 2)]
    pairs = [_pair(i, g, h) for i, (g, h, _) in enumerate(rows)]
    weak = {f"x{i}": _weak(i, w, (1 if w == 1 else -1) * (i + 1) / 10) for i, (_, _, w) in enumerate(rows)}
    m, bins = feedback_metrics(7, pairs, weak, n_bins=2)
    assert m["n_labeled"] == 7 and m["n_unlabeled"] == 4
    assert m["agreement_weak_human"] == 0.25
    assert m["accuracy_human_vs_gold"] == 0.75
    assert m["accuracy_weak_vs_gold"] == 0.5
    # Disagreements: pairs 1, 2, 3; the weak label is right only on pair 3.
    assert m["n_disagree"] == 3
    assert m["gold_backs_weak_when_disagree"] == pytest.approx(1 / 3, abs=1e-4)
    agreement = [b for b in bins if b["measure"] == "agreement_weak_human"]
    assert [b["n"] for b in agreement] == [2, 2]
    assert agreement[0]["margin_hi"] <= agreement[1]["margin_lo"]
    assert {b["measure"] for b in bins} == {"agreement_weak_human", "accuracy_weak_vs_gold", "accuracy_human_vs_gold"}
    assert all(b["lo"] <= b["share"] <= b["hi"] for b in bins)
    assert m["n_gold_decided"] == 4 and m["n_disagree_gold_decided"] == 3
    # Wilson 95% interval of 1/4, by hand: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z, n, p = 1.96, 4, 0.25
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    assert (m["agreement_weak_human_lo"], m["agreement_weak_human_hi"]) == (round(centre - half, 4), round(centre + half, 4))
    assert m["agreement_weak_human_lo"] < 0.25 < m["agreement_weak_human_hi"]
    # Every pair's gold gap is 1.0 here; agree = pair 0 only.
    assert m["gold_gap_mean_agree"] == m["gold_gap_mean_disagree"] == m["gold_gap_median_disagree"] == 1.0


def test_no_gold_gives_null_gold_metrics():
    pairs = [Pair(id="x0", prompt_id="x0", prompt="p", response_1="a", response_2="b", human=1)]
    m, _ = feedback_metrics(1, pairs, {"x0": _weak(0, 1, 0.3)}, 3)
    assert m["agreement_weak_human"] == 1.0
    assert m["accuracy_human_vs_gold"] is None and m["gold_backs_weak_when_disagree"] is None


def test_weak_labels_must_cover_d_u_exactly():
    from weakalign.analysis.compare import check_covers
    from weakalign.records.io import DataError

    with pytest.raises(DataError, match=r"weak\.jsonl: no weak label for 1 of 1 D_u pairs"):
        check_covers([_pair(0, 1, 1)], {}, "weak.jsonl")
    with pytest.raises(DataError, match=r"weak\.jsonl: 1 weak labels for pairs not in D_u, e.g. \['x1'\]"):
        check_covers([_pair(0, 1, 1)], {"x0": _weak(0, 1, 0.3), "x1": _weak(1, 1, 0.3)}, "weak.jsonl")


def test_feedback_labels_per_source():
    pairs = [_pair(0, 1, 2), _pair(1, 2, 2)]
    weak = {"x0": _weak(0, 1, 0.5), "x1": _weak(1, 1, 0.1)}
    assert [x.chosen for x in feedback_labels(pairs, weak, "human", 0)] == [2, 2]
    assert [x.chosen for x in feedback_labels(pairs, weak, "weak", 0)] == [1, 1]
    assert [x.chosen for x in feedback_labels(pairs, weak, "gold", 0)] == [1, 2]
    rnd = [x.chosen for x in feedback_labels(pairs * 20, weak, "random", 0)]
    assert set(rnd) == {1, 2}
    assert rnd == [x.chosen for x in feedback_labels(pairs * 20, weak, "random", 0)]
    tie = Pair(id="t", prompt_id="t", prompt="p", response_1="a", response_2="b", gold_1=0.5, gold_2=0.5, human=1)
    assert feedback_labels([tie], weak, "gold", 0) == []  # a gold tie teaches nothing
    # weak_disagree: x0 and x1 (weak 1, human 2) with the weak label, not x2 (both 1); weak_confident: |margin| >= 0.3
    # keeps x0 only.
    agreeing = _pair(2, 1, 1)
    both = {**weak, "x2": _weak(2, 1, 0.9)}
    assert [(x.pair_id, x.chosen) for x in feedback_labels(pairs + [agreeing], both, "weak_disagree", 0)] == [
        ("x0", 1), ("x1", 1)]
    assert [x.pair_id for x in feedback_labels(pairs, weak, "weak_confident", 0, confident_margin=0.3)] == ["x0"]
    assert len(feedback_labels(pairs, weak, "weak_confident", 0, confident_margin=0.0)) == 2


def test_feedback_must_label_d_u_pairs_once():
    from weakalign.analysis.compare import feedback_choice
    from weakalign.records.io import DataError
    from weakalign.records.schema import Preference

    rows = [(1, Preference(pair_id="x0", chosen=2)), (2, Preference(pair_id="x1", chosen=1))]
    assert feedback_choice(rows, {"x0", "x1", "x2"}, "f.jsonl") == {"x0": 2, "x1": 1}  # leaving pairs out is fine
    with pytest.raises(DataError, match=r"f\.jsonl:2: label for pair 'x1', which is not in D_u"):
        feedback_choice(rows, {"x0"}, "f.jsonl")
    with pytest.raises(DataError, match=r"f\.jsonl:2: a second label for pair 'x0'"):
        feedback_choice([rows[0], (2, Preference(pair_id="x0", chosen=1))], {"x0"}, "f.jsonl")


def test_the_other_labelers_as_feedback_sources_and_their_metrics():
    from weakalign.analysis.compare import labeler_metrics

    # (gold, human): 4 pairs; rm agrees with human on 3; the judge decides 3 pairs and ties on x3.
    pairs = [_pair(0, 1, 1), _pair(1, 2, 2), _pair(2, 1, 2), _pair(3, 2, 2)]
    weak = {f"x{i}": _weak(i, 1, 0.2) for i in range(4)}
    rm = {"x0": 1, "x1": 2, "x2": 2, "x3": 1}
    judge = {"x0": 1, "x1": 1, "x2": 1, "x3": None}
    others = {"rm": rm, "judge": judge}
    assert [x.chosen for x in feedback_labels(pairs, weak, "rm", 0, others=others)] == [1, 2, 2, 1]
    assert [(x.pair_id, x.chosen) for x in feedback_labels(pairs, weak, "judge", 0, others=others)] == [
        ("x0", 1), ("x1", 1), ("x2", 1)]  # the tie is left out
    with pytest.raises(ValueError, match="label_rm.enabled is false"):
        feedback_labels(pairs, weak, "rm", 0, others={"rm": {}})
    m = labeler_metrics(pairs, weak, "rm", rm)
    assert m["agreement_rm_human"] == 0.75 and m["n_rm_decided"] == 4
    assert m["accuracy_rm_vs_gold"] == 0.5  # right on x0 (gold 1) and x1 (gold 2), wrong on x2 and x3
    assert m["agreement_rm_weak"] == 0.5
    assert m["agreement_rm_human_lo"] < 0.75 < m["agreement_rm_human_hi"]
    j = labeler_metrics(pairs, weak, "judge", judge)
    assert j["n_judge_decided"] == 3 and j["agreement_judge_human"] == pytest.approx(1 / 3, abs=1e-4)  # x0 only
    assert j["accuracy_judge_vs_gold"] == pytest.approx(2 / 3, abs=1e-4)  # x0 and x2 right, x1 wrong
    off = labeler_metrics(pairs, weak, "judge", {})
    assert set(off) == set(j) and all(v is None for v in off.values())  # same keys, null, when switched off


def test_weak_confident_weighting_and_the_weighted_draw():
    from weakalign.analysis.compare import weighted_draw

    pairs = [_pair(i, 1, 1) for i in range(4)]
    weak = {f"x{i}": _weak(i, 1, m) for i, m in enumerate((0.05, 0.2, 0.4, 0.6))}
    plain = feedback_labels(pairs, weak, "weak_confident", 0, confident_margin=0.1)
    assert [f.weight for f in plain] == [1.0, 1.0, 1.0]
    weighted = feedback_labels(pairs, weak, "weak_confident", 0, confident_margin=0.1, confident_weighting="margin")
    assert [(f.pair_id, f.weight) for f in weighted] == [("x1", 0.5), ("x2", 1.0), ("x3", 1.5)]  # |m| / mean 0.4
    assert weighted_draw([1.0, 1.0, 1.0], seed=0) == [0, 1, 2]  # unweighted: every pair once, as before
    draws = weighted_draw([0.5, 1.0, 1.5] * 200, seed=0)
    assert draws == weighted_draw([0.5, 1.0, 1.5] * 200, seed=0) and len(draws) == 600
    share = [sum(d % 3 == k for d in draws) / 600 for k in range(3)]
    assert share == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.05)  # in proportion to the weights


def test_calibration_sources_flip_exact_nested_shares_of_gold():
    # 200 gold-decided pairs and one gold tie: noisy_gold_NN inverts exactly round(NN% of 200) gold labels, seeded,
    # the flips at a lower rate are among those at a higher one, and `flipped` inverts every one.
    from weakalign.analysis.compare import source_metrics

    pairs = [_pair(i, 1 + i % 2, 1) for i in range(200)]
    pairs.append(Pair(id="t", prompt_id="t", prompt="p", response_1="a", response_2="b", gold_1=0.5, gold_2=0.5,
                      human=1))
    weak = {p.id: _weak(0, 1, 0.1) for p in pairs}
    gold = {p.id: p.gold for p in pairs}

    def wrong(source, seed=0):
        labels = feedback_labels(pairs, weak, source, seed)
        assert len(labels) == 200  # the tie is left out, as for `gold`
        return {f.pair_id for f in labels if f.chosen != gold[f.pair_id]}

    w10, w20, w30 = wrong("noisy_gold_10"), wrong("noisy_gold_20"), wrong("noisy_gold_30")
    assert (len(w10), len(w20), len(w30)) == (20, 40, 60)
    assert w10 < w20 < w30
    assert len(wrong("flipped")) == 200 and wrong("gold") == set()
    assert wrong("noisy_gold_10", seed=1) != w10 and wrong("noisy_gold_10") == w10  # seeded
    m = source_metrics(pairs, feedback_labels(pairs, weak, "noisy_gold_30", 0))
    assert m == {"n_pairs": 200, "label_accuracy": 0.7, "agreement_human": pytest.approx(m["agreement_human"])}
    assert source_metrics(pairs, feedback_labels(pairs, weak, "flipped", 0))["label_accuracy"] == 0.0


def test_calibration_sources_in_params(shipped):
    def with_sources(sources):
        return shipped({"align": {"sources": sources}})

    assert with_sources(["flipped", "noisy_gold_5", "noisy_gold_99"])
    for bad in ("noisy_gold_0", "noisy_gold_100", "noisy_gold_x", "noisy_gold_05"):
        with pytest.raises(Exception, match="unknown feedback source"):
            with_sources([bad])
