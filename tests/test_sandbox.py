"""The committed raw prompts (both sandbox tasks) are exactly what the seeded generator writes."""

import json
from collections import Counter

import pytest

from weakalign.data.sandbox import (OPENINGS, SUBJECTS, TONES, TONE_TEMPLATES, make_prompts, make_tone_prompts,
                                    requested_tone)
from weakalign.records.io import read_jsonl
from weakalign.records.schema import Prompt


def test_committed_prompts_match_the_generator(root):
    rows = [json.loads(line) for line in (root / "data/raw/prompts.jsonl").read_text().splitlines()]
    assert rows == make_prompts(len(rows), seed=0)
    assert len(rows) >= 600


def test_prompts_are_valid_distinct_and_mixed(root):
    prompts = read_jsonl(root / "data/raw/prompts.jsonl", Prompt)
    assert len({p.id for p in prompts}) == len({p.prompt for p in prompts}) == len(prompts)
    kinds = {k: sum(k in p.prompt for p in prompts) for k in ("film", "book", "product", "restaurant")}
    assert all(v > 0 for v in kinds.values()), kinds


def test_generator_is_deterministic():
    assert make_prompts(50, 3) == make_prompts(50, 3) != make_prompts(50, 4)


# --- the tone task ------------------------------------------------------------------------------------------------

def _opening_tone(prompt: str) -> str:
    """The tone of the quoted opening, looked up among every opening the grid can write."""
    quoted = prompt.split('"', 1)[1].rstrip('"')
    for tone, openings in OPENINGS.items():
        for opening in openings:
            for subjects in SUBJECTS.values():
                for subject in subjects:
                    o = opening.format(s=subject)
                    if quoted == o[0].upper() + o[1:]:
                        return tone
    raise AssertionError(f"unknown opening in {prompt!r}")


def test_committed_tone_prompts_match_the_generator_and_the_vader_set_size(root):
    rows = [json.loads(line) for line in (root / "data/raw/tone_prompts.jsonl").read_text().splitlines()]
    assert rows == make_tone_prompts(len(rows), seed=0)
    assert len(rows) == len((root / "data/raw/prompts.jsonl").read_text().splitlines())
    prompts = read_jsonl(root / "data/raw/tone_prompts.jsonl", Prompt)
    assert len({p.id for p in prompts}) == len({p.prompt for p in prompts}) == len(prompts)


@pytest.mark.parametrize("n", [600, 50, 2])
def test_tone_prompts_ask_half_each_way_whatever_the_opening(n):
    rows = make_tone_prompts(n, seed=1)
    assert len(rows) == len({r["prompt"] for r in rows}) == n
    assert [r["id"] for r in rows] == [f"p{i:04d}" for i in range(n)]
    asked = Counter(requested_tone(r["prompt"]) for r in rows)
    assert asked == {"positive": n // 2, "negative": n // 2}
    # Within every opening tone, as many positive as negative requests: the opening does not give the request away.
    by_opening = Counter((_opening_tone(r["prompt"]), requested_tone(r["prompt"])) for r in rows)
    for tone in OPENINGS:
        assert by_opening[tone, "positive"] == by_opening[tone, "negative"], by_opening
    if n >= 6:
        assert max(by_opening.values()) - min(by_opening.values()) <= 1, by_opening


def test_tone_generator_is_deterministic_and_checks_n():
    assert make_tone_prompts(50, 3) == make_tone_prompts(50, 3) != make_tone_prompts(50, 4)
    with pytest.raises(ValueError, match="even"):
        make_tone_prompts(51, 0)
    with pytest.raises(ValueError, match="at most 2880"):
        make_tone_prompts(2886, 0)
    assert len(make_tone_prompts(2880, 0)) == 2880  # the whole grid


def test_requested_tone_round_trips_and_reads_only_the_instruction(root):
    for template in TONE_TEMPLATES:
        for tone in TONES:
            for opening in (o for openings in OPENINGS.values() for o in openings):
                assert requested_tone(template.format(t=tone, k="film", o=opening.format(s="the film"))) == tone
    # An opening cannot override the instruction, and the vader task's prompts carry no request.
    assert requested_tone('Finish this review, in a positive tone: "Written in a negative tone,"') == "positive"
    for row in make_prompts(50, 0):
        with pytest.raises(ValueError, match="cannot tell the requested tone"):
            requested_tone(row["prompt"])
    with pytest.raises(ValueError, match="Say it in a positive tone and in a negative tone"):
        requested_tone('Say it in a positive tone and in a negative tone: "x"')


def test_style_pairs_draw_two_different_styles_in_a_seeded_coin_order():
    from weakalign.data.sandbox import steered, style_pairs

    draw = style_pairs(3000, 3, seed=0)
    assert draw == style_pairs(3000, 3, seed=0) != style_pairs(3000, 3, seed=1)
    assert all(a != b and {a, b} <= {0, 1, 2} for a, b in draw)
    # Every unordered pair of styles, and each order of it, about equally often: the position carries no preference.
    counts = Counter(draw)
    assert len(counts) == 6 and all(abs(n - 500) < 100 for n in counts.values()), counts
    assert steered("Finish this review:", "") == "Finish this review:"
    assert steered("Finish this review:", "Be warm.") == "Finish this review: Be warm."


def test_generate_pairs_samples_each_response_under_its_style_and_keeps_the_plain_prompt(tmp_path, root, monkeypatch):
    """The stage feeds each response's steered prompt to the sampler, and the pair (what every later stage sees)
    keeps the plain prompt; the style counts land in the metrics. The sampler is replaced by one that echoes its
    prompt, so the test reads which prompt each response was sampled from."""
    import argparse
    import importlib.util

    import yaml

    from weakalign.config.params import parse_params
    from weakalign.data.sandbox import style_pairs
    from weakalign.modeling import generation, models
    from weakalign.records.io import read_jsonl as read
    from weakalign.records.schema import Pair

    raw = yaml.safe_load((root / "params.yaml").read_text())
    styles = ["", "Be warm.", "Be harsh."]
    raw["generate_pairs"]["styles"] = styles
    params = parse_params(raw)
    prompts = [{"id": f"p{i}", "prompt": f"Finish review {i}:"} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    monkeypatch.setattr(models, "load_model", lambda ref: None)
    monkeypatch.setattr(models, "load_tokenizer", lambda ref: None)
    monkeypatch.setattr(generation, "sample", lambda model, tok, texts, g, seed, n_samples, desc, partial:
                        [[f"<{t}>"] * n_samples for t in texts])
    spec = importlib.util.spec_from_file_location("generate_pairs_stage", root / "stages/generate_pairs.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    args = argparse.Namespace(model="unused", prompts=tmp_path / "train.jsonl", source_pairs=tmp_path / "none.jsonl",
                              out=tmp_path / "pairs.jsonl", metrics=tmp_path / "pairs.json",
                              checkpoints=tmp_path / "ckpt")
    stage.main(args, params)
    pairs = read(tmp_path / "pairs.jsonl", Pair)
    draw = style_pairs(len(prompts), len(styles), params.base.seed)
    for p, pair, (a, b) in zip(prompts, pairs, draw, strict=True):
        assert pair.prompt == p["prompt"]
        assert pair.response_1 == f"<{(p['prompt'] + ' ' + styles[a]).strip()}>"
        assert pair.response_2 == f"<{(p['prompt'] + ' ' + styles[b]).strip()}>"
    counts = json.loads((tmp_path / "pairs.json").read_text())["styles"]
    assert sum(counts.values()) == 2 * len(prompts)
    assert counts == {f"style_{i}": sum(i in d for d in draw) for i in range(3)}
