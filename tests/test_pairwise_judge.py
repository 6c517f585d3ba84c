"""The `judge` labeler: the prompted pairwise judge, both orders, ties, batching and resume."""

from __future__ import annotations

import pytest
import torch

from weakalign.analysis.compare import judge_feedback_label
from weakalign.labelers import pairwise_judge
from weakalign.labelers.pairwise_judge import encode, judge_pairs, letter_ids, log_odds
from weakalign.modeling.models import load_model, load_tokenizer
from weakalign.records.resume import BatchLog
from weakalign.records.schema import JudgeLabel

PAIRS = [("a", "Rate it.", "Great.", "Awful, broke on day one."),
         ("b", "Say something kind about the weather today, please.", "Sunny and warm.", "Rain."),
         ("c", "Hi.", "Hello there, how can I help?", "Go away.")]


@pytest.fixture(scope="module")
def judge(tiny_dir):
    return load_model(tiny_dir).eval(), load_tokenizer(tiny_dir)


def test_the_judge_prompt_shows_both_responses_and_asks_for_one_letter(judge):
    _, tok = judge
    text = tok.decode(encode(tok, "PROMPT", "FIRST", "SECOND"))
    assert text.index("PROMPT") < text.index("Response A:\nFIRST") < text.index("Response B:\nSECOND")
    assert text.rstrip().endswith("assistant")  # the answer starts right after the generation prompt
    a, b = letter_ids(tok)
    assert tok.decode([a]) == "A" and tok.decode([b]) == "B"


def test_log_odds_do_not_depend_on_the_batch_or_its_padding(judge):
    model, tok = judge
    rows = [encode(tok, p, y1, y2) for _, p, y1, y2 in PAIRS]
    assert len({len(r) for r in rows}) == 3  # different lengths: the batch is left-padded
    ab = letter_ids(tok)
    with torch.no_grad():
        together = log_odds(model, rows, tok.pad_token_id, ab)
        alone = [log_odds(model, [r], tok.pad_token_id, ab)[0] for r in rows]
        # By hand: the full logits of the unpadded row, last position.
        by_hand = [(lambda z: (z[ab[0]] - z[ab[1]]).item())(model(torch.tensor([r])).logits[0, -1]) for r in rows]
    assert together == pytest.approx(alone, abs=1e-5)
    assert together == pytest.approx(by_hand, abs=1e-5)


def test_both_orders_decide_a_label_and_disagreeing_orders_are_ties(judge, monkeypatch):
    """Order 1 shows response_1 as A, order 2 shows it as B. Scripted log-odds per row give every case."""
    model, tok = judge
    pairs = [("both_1", "p", "x1", "y1"), ("both_2", "p", "x2", "y2"), ("always_a", "p", "x3", "y3"),
             ("always_b", "p", "x4", "y4"), ("long", "p " * 400, "x5", "y5")]
    # (order 1, order 2): A = +, B = -
    script = {"x1": (2.0, -1.0), "x2": (-0.5, 3.0), "x3": (1.0, 1.5), "x4": (-2.0, -0.1)}

    def fake(model, rows, pad_id, ab):
        out = []
        for r in rows:
            text = tok.decode(r)
            key = next(k for k in script if f"Response A:\n{k}" in text or f"Response B:\n{k}" in text)
            out.append(script[key][0] if f"Response A:\n{key}" in text else script[key][1])
        return out

    monkeypatch.setattr(pairwise_judge, "log_odds", fake)
    v = judge_pairs(model, tok, pairs, batch_size=3, max_length=200, bf16=False)
    by_id = {x.pair_id: x for x in v.labels}
    assert [x.pair_id for x in v.labels] == [p[0] for p in pairs]  # input order
    assert by_id["both_1"].label == 1 and by_id["both_1"].margin == pytest.approx(1.5)
    assert by_id["both_2"].label == 2 and by_id["both_2"].margin == pytest.approx(-1.75)
    assert by_id["always_a"].label is None and by_id["always_b"].label is None  # position bias: a tie
    assert by_id["always_a"].margin == pytest.approx(-0.25)  # the bias cancels in the mean
    assert by_id["long"].label is None and by_id["long"].log_odds_12 is None and v.n_too_long == 1
    assert v.a_share == pytest.approx(4 / 8)  # 2.0, 3.0, 1.0, 1.5 answer A; -0.5, -1.0, -2.0, -0.1 answer B
    assert v.n_tokens > 0


def test_ties_are_left_out_unless_broken_by_the_mean_log_odds():
    def lab(label, margin):
        return JudgeLabel(pair_id="x", log_odds_12=0.0, log_odds_21=0.0, margin=margin, label=label)

    assert judge_feedback_label(lab(2, 0.7), break_ties=True) == 2  # a verdict stands
    assert judge_feedback_label(lab(None, 0.7), break_ties=False) is None
    assert judge_feedback_label(lab(None, 0.7), break_ties=True) == 1
    assert judge_feedback_label(lab(None, -0.2), break_ties=True) == 2
    assert judge_feedback_label(lab(None, 0.0), break_ties=True) is None  # no side at all
    assert judge_feedback_label(JudgeLabel(pair_id="x", log_odds_12=None, log_odds_21=None, margin=None, label=None),
                          break_ties=True) is None  # too long to judge


def test_a_killed_judge_run_resumes_with_the_same_verdicts(judge, tmp_path):
    model, tok = judge
    whole = judge_pairs(model, tok, PAIRS, batch_size=2, max_length=512, bf16=False)
    log = BatchLog(tmp_path / "log.jsonl")
    first = judge_pairs(model, tok, PAIRS, batch_size=2, max_length=512, bf16=False, partial=log)
    log.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3  # 6 orderings in batches of 2
    (tmp_path / "log.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # a kill in the last write
    log = BatchLog(tmp_path / "log.jsonl")
    assert sorted(log.done) == [0, 1]
    resumed = judge_pairs(model, tok, PAIRS, batch_size=2, max_length=512, bf16=False, partial=log)
    assert resumed.labels == whole.labels == first.labels


def test_a_tokenizer_that_splits_the_answer_letters_is_refused():
    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [1, 2]

    with pytest.raises(ValueError, match="several tokens"):
        letter_ids(Tok())
