"""The committed raw prompts are exactly what the seeded generator writes."""

import json

from weakalign.io import read_jsonl
from weakalign.sandbox import make_prompts
from weakalign.schema import Prompt


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
