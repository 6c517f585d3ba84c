"""The pipeline's row schemas: one place for what a prompt, a pair and a label look like on disk.

Files between stages (see docs/ARCHITECTURE.md):
- prompts (`data/raw/prompts.jsonl`, `data/prompts/*.jsonl`): :class:`Prompt`
- pairs (`data/source/pairs/records.jsonl`, `data/pairs.jsonl`, `data/annotated.jsonl`, `data/split/*.jsonl`):
  :class:`Pair`
- labels (`data/labels/weak.jsonl`, `data/labels/rm/records.jsonl`): :class:`WeakLabel`;
  `data/labels/judge/records.jsonl`: :class:`JudgeLabel`; feedback (`data/feedback/<source>.jsonl`): :class:`Preference`
- the targets' reference log-probs of D_u (`data/reference.jsonl`): :class:`ReferenceLogps`
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# A sanity bound, far above any response the pipeline generates: text longer than this is a data error, not a
# long answer. Token-level truncation is the trainer's `max_length`, counted separately.
MAX_CHARS = 20_000


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# An id names a row in every file after it and in logs and reports: a 5 MB id was copied everywhere. Printable,
# one line, at most 200 characters (real data's ids are hashes or short keys).
MAX_ID = 200


def _id(v: str) -> str:
    if not v or len(v) > MAX_ID or not v.isprintable():
        what = "empty" if not v else f"{len(v)} characters long" if len(v) > MAX_ID else "not printable text"
        raise ValueError(f"an id must be 1 to {MAX_ID} printable characters on one line; this one is {what}")
    return v


Id = Annotated[str, AfterValidator(_id)]


# Characters that render as nothing but are letters or marks to Unicode, so category Cf misses them: the Hangul
# fillers, the Braille blank, the combining grapheme joiner and the variation selectors. A prompt of U+2800 alone
# was accepted as text.
_BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u034f",
          *map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0xE0100, 0xE01F0))}


def _shown(c: str) -> str:
    """A character as a reader sees it: blank letters as the space they look like, format and control characters
    as nothing."""
    if c in _BLANK:
        return " "
    cat = unicodedata.category(c)
    return "" if cat == "Cf" or (cat == "Cc" and not c.isspace()) else c


def visible(text: str) -> str:
    """Text as a reader sees it: NFKC (full-width letters, ligatures and other compatibility forms become the
    plain ones), without what renders as nothing (format characters: zero-width spaces and joiners, the BOM,
    bidirectional controls; control characters such as ESC, BEL and NUL), blank letters such as U+3164 and U+2800
    as spaces, runs of whitespace as one space, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(map(_shown, text))
    return re.sub(r"\s+", " ", text).strip()


# Cyrillic and Greek letters drawn like Latin ones (the common rows of Unicode's confusables, TR39): a test prompt
# retyped with them passed the leakage guard into D_l/D_u (8 of 10 in a probe). Only the comparison key folds them.
_LOOKALIKE = str.maketrans(
    "аАвВеЕѕЅіІјЈкКмМнНоОрРсСтТуУхХԁһӏԛԝүΑΒΕΖΗΙΚΜΝΟΡΤΥΧοορνκι",
    "aAbBeEsSiIjJkKmMhHoOpPcCtTyYxXdhlqwyABEZHIKMNOPTYXoopvki")


def normalise(text: str) -> str:
    """The key under which two prompts are the same prompt: `visible` text with look-alike Cyrillic and Greek
    letters read as the Latin ones, case-folded. The duplicate check, the leakage guard and the prompt ids of real
    data all use it, so look-alike text cannot pass one and not the other."""
    return visible(text).translate(_LOOKALIKE).casefold()


# Why a source row is dropped: the HH dialogue's own reasons (weakalign.data.hh), then those of :func:`usable`. Every
# source counts every reason (zeros included) in metrics/ingest.json.
DROP_REASONS = ("no_assistant_turn", "prompt_mismatch", "ends_with_human_turn", "nested_assistant_turn",
                "empty_prompt", "empty_response", "identical_responses", "too_long")


class Unusable(ValueError):
    """A well-formed row the pipeline cannot use; `reason` is one of DROP_REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def response_problem(a: str, b: str) -> str | None:
    """Why two responses cannot make a pair ("empty_response", "identical_responses"), or None; the text as
    :class:`Pair` sees it (`visible`). Both the data sources and generate_pairs' resampling ask this."""
    a, b = visible(a), visible(b)
    if not a or not b:
        return "empty_response"
    return "identical_responses" if a == b else None


def usable(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    """The (prompt, chosen, rejected) texts stripped, or Unusable with the reason: the checks every source format
    shares (what :class:`Pair` would reject, counted as a drop instead)."""
    prompt, a, b = prompt.strip(), a.strip(), b.strip()
    if not visible(prompt):  # as the schema sees text: zero-width characters alone are empty
        raise Unusable("empty_prompt")
    why = response_problem(a, b)
    if why:
        raise Unusable(why)
    if max(len(prompt), len(a), len(b)) > MAX_CHARS:
        raise Unusable("too_long")
    return prompt, a, b


def _text(v: str, what: str) -> str:
    if not visible(v):
        raise ValueError(f"{what} is empty" + (" (only invisible characters)" if v.strip() else ""))
    if len(v) > MAX_CHARS:
        raise ValueError(f"{what} has {len(v)} characters, over the limit of {MAX_CHARS}")
    return v


class Prompt(_Row):
    id: Id
    prompt: str

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        return _text(v, "prompt")


class Pair(_Row):
    """Two responses to one prompt, with whatever annotation the stages so far have added."""

    id: Id
    prompt_id: Id
    prompt: str
    response_1: str
    response_2: str
    gold_1: float | None = None  # gold judge's score of each response (annotate)
    gold_2: float | None = None
    human: Literal[1, 2] | None = None  # the (simulated) human's preferred response (annotate)

    @field_validator("prompt", "response_1", "response_2")
    @classmethod
    def _texts(cls, v: str, info) -> str:
        return _text(v, info.field_name)

    @model_validator(mode="after")
    def _distinct(self) -> Pair:
        if visible(self.response_1) == visible(self.response_2):
            raise ValueError("response_1 and response_2 are identical: the pair carries no preference")
        return self

    @property
    def gold(self) -> Literal[1, 2] | None:
        """The gold judge's preference; None without gold scores or on an exact tie."""
        if self.gold_1 is None or self.gold_2 is None or self.gold_1 == self.gold_2:
            return None
        return 1 if self.gold_1 > self.gold_2 else 2


class WeakLabel(_Row):
    """A scoring labeler's rewards for one pair: the weak teacher's implicit rewards r = beta * (log pi_weak -
    log pi_ref), or the `rm` labeler's reward-model scores."""

    pair_id: Id
    reward_1: float
    reward_2: float
    margin: float  # reward_1 - reward_2
    label: Literal[1, 2]  # the response with the higher reward (1 on an exact tie)


class JudgeLabel(_Row):
    """The prompted pairwise judge's verdict on one pair, asked in both orders (weakalign.labelers.pairwise_judge)."""

    pair_id: Id
    log_odds_12: float | None  # log P("A") - log P("B") with response_1 shown as A (None: too long to judge)
    log_odds_21: float | None  # the same with response_2 shown as A
    margin: float | None  # (log_odds_12 - log_odds_21) / 2: > 0 favours response_1 in both orders on average
    label: Literal[1, 2] | None  # the response both orders prefer; None where they disagree (a tie) or too long


class ReferenceLogps(_Row):
    """The targets' reference (their start model) log-probs of one D_u pair's two responses, as TRL's DPOTrainer
    precomputes them (`reference` stage); every `align@` stage reads them instead of scoring D_u again."""

    pair_id: Id
    logp_1: float = Field(allow_inf_nan=False)
    logp_2: float = Field(allow_inf_nan=False)


class Preference(_Row):
    """One feedback source's choice on one pair: what `align` trains on."""

    pair_id: Id
    chosen: Literal[1, 2]
    weight: float = Field(1.0, gt=0)  # relative sampling weight in training (weak_confident with weighting)
