"""The embedded sandbox's prompts: openings of reviews, of mixed tone, that the model is asked to continue.

A controlled stand-in for real preference data: the gold judge (`judge.py`) knows what "better" means here
(a positive, non-repetitive continuation that does not parrot the prompt), so every label source can be checked
against it. `scripts/make_prompts.py` writes `data/raw/prompts.jsonl` from :func:`make_prompts`.
"""

from __future__ import annotations

import random

SUBJECTS = {
    "film": ["the new space thriller", "this period drama", "the animated sequel", "that indie horror film",
             "the courtroom drama", "this romantic comedy", "the war epic", "the nature documentary"],
    "book": ["this debut novel", "the memoir", "the fantasy trilogy's last book", "this cookbook",
             "the history of the Silk Road", "the short-story collection", "this detective novel", "the poetry book"],
    "product": ["these wireless earbuds", "the robot vacuum", "this budget laptop", "the electric kettle",
                "these running shoes", "the standing desk", "this phone case", "the coffee grinder"],
    "restaurant": ["the corner ramen shop", "this vegan bistro", "the new pizza place", "the hotel restaurant",
                   "this family-run taqueria", "the rooftop bar", "the seafood grill", "this bakery cafe"],
}

OPENINGS = {
    "positive": ["I went in with high hopes for {s}, and", "Honestly, {s} surprised me:", "From the first minute, {s}",
                 "I have recommended {s} to everyone because", "What I loved most about {s} is that"],
    "negative": ["I wanted to like {s}, but", "I regret spending money on {s}, since", "Frankly, {s} was a letdown:",
                 "Two stars for {s}, because", "The worst thing about {s} is that"],
    "mixed": ["I have mixed feelings about {s}:", "{s} is hard to judge, because", "On paper {s} sounds great, yet",
              "After a week with {s}, I think", "Some parts of {s} worked and some did not:"],
}

TEMPLATES = [
    'Continue this review in one or two sentences: "{o}"',
    'Write the next sentence of this {k} review: "{o}"',
    'Finish this short review of a {k}: "{o}"',
]


def make_prompts(n: int, seed: int) -> list[dict]:
    """`n` distinct prompts, each {"id", "prompt"}, drawn without replacement from the template grid."""
    rng = random.Random(seed)
    grid = [(kind, subject, tone, opening, template)
            for kind, subjects in SUBJECTS.items() for subject in subjects
            for tone, openings in OPENINGS.items() for opening in openings
            for template in TEMPLATES]
    if n > len(grid):
        raise ValueError(f"asked for {n} prompts; the sandbox grid has {len(grid)}")
    rows = []
    for i, (kind, subject, tone, opening, template) in enumerate(rng.sample(grid, n)):
        o = opening.format(s=subject)
        o = o[0].upper() + o[1:]
        rows.append({"id": f"p{i:04d}", "prompt": template.format(o=o, k=kind)})
    return rows
