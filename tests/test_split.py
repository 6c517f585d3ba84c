"""Held-out prompts, D_l / D_u splits, and the leakage guard."""

import pytest

from weakalign.data.split import LeakageError, check_disjoint, flip_labels, holdout, seeded_share, split
from weakalign.records.schema import Pair, Prompt


def _prompts(n):
    return [Prompt(id=f"p{i}", prompt=f"Prompt number {i}") for i in range(n)]


def _pairs(prompts):
    return [Pair(id=p.id, prompt_id=p.id, prompt=p.prompt, response_1="a b c", response_2="d e f") for p in prompts]


def test_holdout_is_disjoint_sized_and_seeded():
    prompts = _prompts(50)
    train, test = holdout(prompts, 10, seed=0, n_train=30)
    assert len(test) == 10 and len(train) == 30
    assert not {p.id for p in train} & {p.id for p in test}
    assert holdout(prompts, 10, 0, 30) == (train, test)
    assert holdout(prompts, 10, 1, 30) != (train, test)


def test_holdout_rejects_impossible_sizes_and_duplicates():
    with pytest.raises(ValueError, match="n_test"):
        holdout(_prompts(5), 5, 0)
    with pytest.raises(ValueError, match="n_train"):
        holdout(_prompts(5), 2, 0, n_train=4)
    with pytest.raises(ValueError, match="duplicate prompt id"):
        holdout(_prompts(3) + _prompts(1), 1, 0)


def test_split_is_disjoint_by_prompt_and_sized():
    pairs = _pairs(_prompts(40))
    labeled, unlabeled = split(pairs, 8, None, seed=0)
    assert len(labeled) == 8 and len(unlabeled) == 32
    assert not {p.prompt_id for p in labeled} & {p.prompt_id for p in unlabeled}
    labeled2, unlabeled2 = split(pairs, 8, 10, seed=0)
    assert len(unlabeled2) == 10 and labeled2 == labeled


def test_split_that_does_not_fit_fails():
    with pytest.raises(ValueError, match="split.n_labeled=30"):
        split(_pairs(_prompts(40)), 30, 20, seed=0)


def test_leakage_guard():
    prompts = _prompts(30)
    train, test = holdout(prompts, 10, 0)
    labeled, unlabeled = split(_pairs(train), 5, None, 0)
    check_disjoint(labeled, unlabeled, test)  # clean
    leaked = unlabeled + _pairs(test[:1])
    with pytest.raises(LeakageError, match="test prompt"):
        check_disjoint(labeled, leaked, test)
    # Same text under another id is caught too (normalised: case and spaces).
    twin = Pair(id="zz", prompt_id="zz", prompt="  " + test[0].prompt.upper(), response_1="a", response_2="b")
    with pytest.raises(LeakageError):
        check_disjoint(labeled, unlabeled + [twin], test)
    with pytest.raises(LeakageError, match="both D_l and D_u"):
        check_disjoint(labeled, unlabeled + labeled[:1], test)


def test_split_nests_labeled_sets_and_fixes_unlabeled():
    # The label-fraction sweep: with n_unlabeled set, D_u is the same for every D_l size and a smaller D_l is a
    # subset of a larger one, so only the weak teacher's training set changes.
    pairs = _pairs(_prompts(60))
    sets = {n: split(pairs, n, 20, seed=3) for n in (5, 10, 40)}
    assert sets[5][1] == sets[10][1] == sets[40][1]
    ids = {n: {p.id for p in lab} for n, (lab, _) in sets.items()}
    assert ids[5] < ids[10] < ids[40]
    # Without n_unlabeled, D_u is every other pair, and D_l still nests.
    lab_a, unl_a = split(pairs, 5, None, seed=3)
    lab_b, _ = split(pairs, 10, None, seed=3)
    assert {p.id for p in lab_a} < {p.id for p in lab_b} and len(unl_a) == 55
    # Prompts with several pairs stay whole on one side.
    multi = pairs + [p.model_copy(update={"id": p.id + "b"}) for p in pairs[:30]]
    lab, unl = split(multi, 12, 30, seed=1)
    assert not {p.prompt_id for p in lab} & {p.prompt_id for p in unl}


def test_look_alike_prompts_are_one_prompt_for_the_duplicate_check_and_the_leakage_guard():
    # Full-width letters and zero-width characters render like the plain text; byte-unequal but the same prompt.
    from weakalign.data.split import check_unique
    from weakalign.records.io import DataError
    from weakalign.records.schema import normalise

    plain = "Continue this review: the kettle"
    fullwidth = "Ｃｏｎｔｉｎｕｅ this review: the kettle"
    zero_width = "Continue\u200b this re\u200dview: the\ufeff kettle"
    assert normalise(plain) == normalise(fullwidth) == normalise(zero_width)
    numbered = [(1, Prompt(id="a", prompt=plain)), (2, Prompt(id="b", prompt=zero_width))]
    with pytest.raises(DataError, match="prompts.jsonl:2: prompt 'b' has the same text as 'a'"):
        check_unique(numbered, "prompts.jsonl")
    test = [Prompt(id="t", prompt=fullwidth)]
    pair = Pair(id="p", prompt_id="x", prompt=plain, response_1="one", response_2="two")
    with pytest.raises(LeakageError, match="test prompt 'x' occurs in D_u"):
        check_disjoint([], [pair], test)


def test_a_text_of_invisible_characters_is_empty():
    with pytest.raises(ValueError, match="prompt is empty \\(only invisible characters\\)"):
        Prompt(id="a", prompt="\u200b\u200c\u2060\ufeff")
    with pytest.raises(ValueError, match="identical"):  # differ only by a zero-width space
        Pair(id="p", prompt_id="x", prompt="hi", response_1="good one", response_2="good\u200b one")


def test_cyrillic_look_alikes_and_blank_letters_do_not_slip_past_the_leakage_guard():
    """A test prompt retyped with Cyrillic letters drawn like Latin ones, with a Hangul filler and a combining
    grapheme joiner in it, is still the test prompt; a prompt of blank letters or controls alone is empty."""
    from weakalign.records.schema import normalise

    plain = "Continue this review: the kettle is great"
    disguised = "Cоntinuе this rеviеw:\u3164thе kеttlе\u034f is grеаt"  # о, е, а Cyrillic
    assert disguised != plain and normalise(disguised) == normalise(plain)
    pair = Pair(id="p", prompt_id="x", prompt=disguised, response_1="one", response_2="two")
    with pytest.raises(LeakageError, match="test prompt 'x' occurs in D_u"):
        check_disjoint([], [pair], [Prompt(id="t", prompt=plain)])
    for blank in ("\u2800\u2800", "\u3164", "\x1b\x07\x00", "\ufe0f\u034f"):
        with pytest.raises(ValueError, match="prompt is empty \\(only invisible characters\\)"):
            Prompt(id="a", prompt=blank)


def test_an_id_is_short_printable_text():
    for bad, why in (("x" * 201, "201 characters long"), ("a\nb", "not printable"), ("", "empty")):
        with pytest.raises(ValueError, match=f"an id must be 1 to 200 printable characters on one line; .*{why}"):
            Prompt(id=bad, prompt="hi")
    assert Prompt(id="x" * 200, prompt="hi").id == "x" * 200


def test_label_noise_inverts_exactly_that_share_of_d_l_nested_and_seeded():
    """train_weak.label_noise: exactly round(share * n) human labels inverted, the same ones for a seed whatever the
    file's order, those at 0.25 among those at 0.5; share 0 leaves every label as it is."""
    pairs = [p.model_copy(update={"human": 1 + i % 2}) for i, p in enumerate(_pairs(_prompts(40)))]
    human = {p.id: p.human for p in pairs}
    assert flip_labels(pairs, 0.0, 0) == human
    flipped = {s: {k for k, v in flip_labels(pairs, s, 0).items() if v != human[k]} for s in (0.25, 0.5, 1.0)}
    assert [len(f) for f in flipped.values()] == [10, 20, 40]
    assert flipped[0.25] < flipped[0.5] < flipped[1.0]
    assert all(flip_labels(pairs, 0.5, 0)[k] == 3 - human[k] for k in flipped[0.5])
    assert flip_labels(pairs[::-1], 0.25, 0) == flip_labels(pairs, 0.25, 0)
    assert flip_labels(pairs, 0.25, 1) != flip_labels(pairs, 0.25, 0)
    assert seeded_share(human, 0.25, "label_noise:0") == flipped[0.25]
