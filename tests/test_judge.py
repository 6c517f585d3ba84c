"""The sandbox gold judge: sentiment, and the penalties that make it hard to game."""

from weakalign.judge import VaderJudge, make_judge
from weakalign.params import Judge

PROMPT = 'Continue this review in one or two sentences: "I went in with high hopes for the film, and"'


def test_positive_beats_negative():
    j = VaderJudge()
    good = j.score_one(PROMPT, "It was a wonderful, moving story and I loved every minute of it.")
    bad = j.score_one(PROMPT, "It was a boring, awful mess and I hated every minute of it.")
    assert good > 0.5 > -0.5 > bad


def test_repetition_is_penalised():
    j = VaderJudge()
    honest = j.score_one(PROMPT, "The cast is great and the ending is lovely.")
    gamed = j.score_one(PROMPT, "great great great great great great great great great great")
    assert gamed < honest


def test_copying_the_prompt_is_penalised():
    j = VaderJudge()
    copied = j.score_one(PROMPT, "I went in with high hopes for the film, and I went in with high hopes")
    assert copied < j.score_one(PROMPT, "The film rewarded every hope I had, a joyful surprise.")


def test_short_and_empty_responses_get_the_floor():
    j = VaderJudge(Judge(short_score=-1.0, min_words=4))
    assert j.score_one(PROMPT, "") == -1.0
    assert j.score_one(PROMPT, "Great!") == -1.0


def test_batch_interface_matches_single():
    j = make_judge(Judge())
    responses = ["Lovely.", "It is a charming, clever film with a big heart.", "Dull and far too long, sadly."]
    assert j.score([PROMPT] * 3, responses) == [j.score_one(PROMPT, r) for r in responses]
