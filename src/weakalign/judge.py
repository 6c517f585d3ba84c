"""Gold judges: the reference that every feedback source (human, weak, random) is measured against.

One small interface, :class:`Judge`; the sandbox's judge is :class:`VaderJudge`. A reward model can replace it by
implementing `score`. Scores are floats where higher is better; only their order and differences are used.
"""

from __future__ import annotations

import re
from typing import Protocol

from .params import Judge as JudgeParams

_WORD = re.compile(r"[a-z0-9']+")


class Judge(Protocol):
    name: str

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Score each response to its prompt; higher is better."""
        ...


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


class VaderJudge:
    """VADER compound sentiment of the response in [-1, 1], minus two penalties that make it hard to game.

    - repetition: `repeat_penalty` x the fraction of the response's n-grams that repeat an earlier one
      ("great great great ..." scores low);
    - copying: `copy_penalty` x the fraction of the response's n-grams found in the prompt (parroting the
      opening scores low);
    - a response with fewer than `min_words` words scores `short_score`.
    """

    name = "vader"

    def __init__(self, params: JudgeParams = JudgeParams()):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.p = params
        self._vader = SentimentIntensityAnalyzer()

    def score_one(self, prompt: str, response: str) -> float:
        words = _WORD.findall(response.lower())
        if len(words) < max(self.p.min_words, 1):
            return self.p.short_score
        n = self.p.repeat_ngram
        grams = _ngrams(words, n)
        repeated = (1 - len(set(grams)) / len(grams)) if grams else 0.0
        prompt_grams = set(_ngrams(_WORD.findall(prompt.lower()), n))
        copied = (sum(g in prompt_grams for g in grams) / len(grams)) if grams else 0.0
        sentiment = self._vader.polarity_scores(response)["compound"]
        return round(sentiment - self.p.repeat_penalty * repeated - self.p.copy_penalty * copied, 6)

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [self.score_one(p, r) for p, r in zip(prompts, responses, strict=True)]


def make_judge(params: JudgeParams) -> Judge | None:
    """The configured gold judge; None for `none` (real data without one: gold metrics are null)."""
    if params.name == "none":
        return None
    if params.name == "vader":
        return VaderJudge(params)
    raise ValueError(f"judge.name: unknown judge {params.name!r}")
