"""The embedded sandbox's prompts: openings of reviews, of mixed tone, that the model is asked to continue.

A controlled stand-in for real preference data: the gold judge (`judge.py`) knows what "better" means here, so
every label source can be checked against it. Two tasks (docs/SANDBOX.md):

- `vader` (:func:`make_prompts`, `data/raw/prompts.jsonl`): a positive, non-repetitive continuation that does not
  parrot the prompt is better, whatever the prompt;
- `tone` (:func:`make_tone_prompts`, `data/raw/tone_prompts.jsonl`): each prompt requests a positive or a negative
  continuation, and matching the request is better, so "better" depends on the prompt.

`scripts/make_prompts.py` writes both files.
"""

from __future__ import annotations

import random
import re

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


# The tone task's templates: the existing ones, each with the requested tone in the instruction (before the quote).
TONE_TEMPLATES = [
    'Continue this review in one or two sentences, in a {t} tone: "{o}"',
    'Write the next sentence of this {k} review, in a {t} tone: "{o}"',
    'Finish this short review of a {k}, in a {t} tone: "{o}"',
]
TONES = ("positive", "negative")
_REQUEST = re.compile(r"\bin a (positive|negative) tone\b", re.IGNORECASE)


def requested_tone(prompt: str) -> str:
    """The tone ("positive" or "negative") a tone-task prompt asks for; the one place that reads it.

    Only the instruction, before the quoted opening, is read, so an opening cannot change the request.
    """
    found = _REQUEST.findall(prompt.split('"', 1)[0])
    if len({f.lower() for f in found}) != 1:
        raise ValueError(f"cannot tell the requested tone (positive or negative) of the prompt {prompt[:60]!r}")
    return found[0].lower()


def make_tone_prompts(n: int, seed: int) -> list[dict]:
    """`n` distinct tone-task prompts, each {"id", "prompt"}: half request a positive continuation, half a negative.

    Each opening tone (positive, negative, mixed) gets the same number of prompts of each request, so the request
    cannot be guessed from the opening.
    """
    if n % 2:
        raise ValueError(f"asked for {n} tone prompts; it must be even (half per requested tone)")
    rng = random.Random(seed)
    half = n // 2
    # The same split of each half over the opening tones: every opening tone then has as many requests of each kind.
    share = {tone: half // len(OPENINGS) + (i < half % len(OPENINGS)) for i, tone in enumerate(OPENINGS)}
    cells = []
    for requested in TONES:
        for tone, openings in OPENINGS.items():
            stratum = [(kind, subject, opening, template)
                       for kind, subjects in SUBJECTS.items() for subject in subjects
                       for opening in openings for template in TONE_TEMPLATES]
            if share[tone] > len(stratum):
                raise ValueError(f"asked for {n} tone prompts; the tone grid has {len(stratum)} per opening tone "
                                 f"and request, so at most {len(stratum) * len(OPENINGS) * len(TONES)}")
            cells += [(requested, *c) for c in rng.sample(stratum, share[tone])]
    rng.shuffle(cells)  # else the file would list every positive request first
    rows = []
    for i, (requested, kind, subject, opening, template) in enumerate(cells):
        o = opening.format(s=subject)
        o = o[0].upper() + o[1:]
        rows.append({"id": f"p{i:04d}", "prompt": template.format(o=o, k=kind, t=requested)})
    return rows


def style_pairs(n: int, n_styles: int, seed: int) -> list[tuple[int, int]]:
    """For each of `n` prompts, two different style indices out of `n_styles` (generate_pairs.styles), in a seeded
    random order: which style is response_1 is a coin, so the position carries no preference."""
    rng = random.Random(f"styles:{seed}")
    return [tuple(rng.sample(range(n_styles), 2)) for _ in range(n)]


def steered(prompt: str, style: str) -> str:
    """The prompt a response is sampled from under `style`: the instruction after the prompt ("" keeps it plain)."""
    return f"{prompt} {style}" if style else prompt
