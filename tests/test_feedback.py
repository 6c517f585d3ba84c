"""The feedback-source registry: every module that names a source reads it here (issue 30, one home per fact)."""

import pytest

from weakalign.analysis.compare import feedback_labels
from weakalign.config import feedback
from weakalign.config.params import Align
from weakalign.records.schema import Pair, WeakLabel


def _pair(i, gold, human):
    g1, g2 = {1: (1.0, 0.0), 2: (0.0, 1.0), 0: (0.5, 0.5)}[gold]
    return Pair(id=f"x{i}", prompt_id=f"x{i}", prompt="p", response_1="a", response_2="b", gold_1=g1, gold_2=g2,
                human=human)


def test_every_registered_source_is_accepted_described_and_labels(shipped):
    pairs = [_pair(0, 1, 1), _pair(1, 2, 1), _pair(2, 0, 2)]
    weak = {f"x{i}": WeakLabel(pair_id=f"x{i}", reward_1=m, reward_2=0.0, margin=m, label=1 if m > 0 else 2)
            for i, m in enumerate((0.9, -0.2, 0.5))}
    others = {"rm": {"x0": 2, "x1": 2, "x2": 1}, "judge": {"x0": 1, "x1": None, "x2": 2}}
    # By hand, per source: (pair id, chosen). Gold: x2 is a tie (left out); x1's judge verdict is a tie.
    expected = {"human": [("x0", 1), ("x1", 1), ("x2", 2)], "weak": [("x0", 1), ("x1", 2), ("x2", 1)],
                "gold": [("x0", 1), ("x1", 2)], "flipped": [("x0", 2), ("x1", 1)],
                "weak_disagree": [("x1", 2), ("x2", 1)], "weak_confident": [("x0", 1), ("x2", 1)],
                "rm": [("x0", 2), ("x1", 2), ("x2", 1)], "judge": [("x0", 1), ("x2", 2)]}
    names = list(feedback.REGISTRY)
    on = {"align": {"sources": names}, "label_rm": {"enabled": True}, "label_judge": {"enabled": True}}
    assert shipped(on).align.sources == names
    described = Align.model_fields["sources"].description
    for name in [*names, "noisy_gold_NN"]:
        assert f"`{name}`" in described
    for name in names:
        got = [(x.pair_id, x.chosen) for x in feedback_labels(pairs, weak, name, 0, 0.4, others)]
        if name == "random":
            assert [i for i, _ in got] == ["x0", "x1", "x2"] and {c for _, c in got} <= {1, 2}
        else:
            assert got == expected[name], name


def test_calibration_arms_carry_their_accuracy():
    acc = {n: feedback.get(n).accuracy for n in ("gold", "random", "flipped", "noisy_gold_20", "human", "weak")}
    assert acc == {"gold": 1.0, "random": 0.5, "flipped": 0.0, "noisy_gold_20": 0.8, "human": None, "weak": None}
    assert [n for n in ("gold", "random", "flipped", "noisy_gold_5", "human") if feedback.get(n).needs_gold] == \
        ["gold", "flipped", "noisy_gold_5"]
    assert [n for n in ("gold", "random", "flipped", "noisy_gold_30") if feedback.get(n).floor] == ["random", "flipped"]
    assert [n for n in ("gold", "random", "flipped", "noisy_gold_30", "weak") if feedback.on_line(n)] == \
        ["gold", "random", "noisy_gold_30"]
    assert not feedback.is_calibration("weak@dl_16") and feedback.lookup("weak@dl_16") is None


@pytest.mark.parametrize("name", ["noisy_gold_0", "noisy_gold_100", "noisy_gold_05", "Human", "weak@dl_16", ""])
def test_unknown_names_fail_naming_the_valid_ones(name, shipped):
    with pytest.raises(ValueError, match="unknown feedback source .*human, weak, gold"):
        feedback.get(name)
    with pytest.raises(ValueError, match="align.sources"):
        shipped({"align": {"sources": [name]}})


def test_the_report_and_the_study_order_sources_from_the_registry():
    names = ["random", "noisy_gold_30", "rm", "flipped", "gold", "weak", "noisy_gold_20", "base", "human"]
    bars = sorted(names, key=lambda n: feedback.rank(n, names))
    assert bars == ["base", "human", "weak", "gold", "random", "flipped", "noisy_gold_20", "noisy_gold_30", "rm"]
    names = ["random", "weak@dl_16", "noisy_gold_30", "human", "flipped", "gold", "weak", "noisy_gold_20",
             "weak_disagree", "weak@a"]
    assert feedback.table_order(names) == ["gold", "human", "weak", "weak@a", "weak@dl_16", "weak_disagree",
                                           "noisy_gold_20", "noisy_gold_30", "random", "flipped"]
