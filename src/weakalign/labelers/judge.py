"""Gold judges: the reference that every feedback source (human, weak, random) is measured against.

One small interface, :class:`Judge`: the sandbox's :class:`VaderJudge` and :class:`ToneJudge` (docs/SANDBOX.md),
and :class:`RewardModelJudge` for any Hugging Face sequence-classification reward model (`judge.name` in params;
`none` means no gold judge). Scores are floats where higher is better; only their order and differences are used.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from weakalign.config.params import Judge as JudgeParams
from weakalign.data.sandbox import requested_tone

log = logging.getLogger(__name__)
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

    def __init__(self, params: JudgeParams):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.p = params
        self._vader = SentimentIntensityAnalyzer()

    def score_one(self, prompt: str, response: str) -> float:
        return self._penalised(prompt, response, direction=1)

    def _penalised(self, prompt: str, response: str, direction: int) -> float:
        """`direction` x the response's VADER compound, minus the penalties (the same for every direction)."""
        words = _WORD.findall(response.lower())
        if len(words) < max(self.p.min_words, 1):
            return self.p.short_score
        n = self.p.repeat_ngram
        grams = _ngrams(words, n)
        repeated = (1 - len(set(grams)) / len(grams)) if grams else 0.0
        prompt_grams = set(_ngrams(_WORD.findall(prompt.lower()), n))
        copied = (sum(g in prompt_grams for g in grams) / len(grams)) if grams else 0.0
        sentiment = direction * self._vader.polarity_scores(response)["compound"]
        # + 0.0 turns the -0.0 of a neutral response to a negative request into 0.0 in the written files.
        return round(sentiment - self.p.repeat_penalty * repeated - self.p.copy_penalty * copied, 6) + 0.0

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [self.score_one(p, r) for p, r in zip(prompts, responses, strict=True)]


class ToneJudge(VaderJudge):
    """The tone task's judge: VADER compound x the prompt's requested direction (+1 positive, -1 negative), minus
    VaderJudge's penalties, so the same text scores high on one request and low on the other."""

    name = "tone"

    def score_one(self, prompt: str, response: str) -> float:
        # Parsed before anything else, so that an unreadable prompt fails even for a too-short response.
        direction = 1 if requested_tone(prompt) == "positive" else -1
        return self._penalised(prompt, response, direction)


class RewardModelJudge:
    """A Hugging Face sequence-classification reward model: the score of (prompt, response), batched.

    The pair is formatted as a chat (user turn, assistant turn) with the reward model's own chat template where it
    has one, else as a text pair `tokenizer(prompt, response)` (the form of e.g. OpenAssistant's DeBERTa reward
    models). Texts are sorted by length and right-padded with a dedicated pad token (models.load_reward_model),
    so a score does not depend on its batch.
    """

    def __init__(self, model, tok, batch_size: int, max_length: int | None, name: str):
        self.model, self.tok, self.name = model.eval(), tok, name
        self.batch_size, self.max_length = batch_size, max_length
        self.n_tokens = 0  # tokens scored so far (the cost: 2 N FLOPs each)

    @classmethod
    def from_params(cls, params: JudgeParams) -> RewardModelJudge:
        import torch

        from weakalign.modeling.models import load_reward_model

        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model, tok = load_reward_model(params.model, dtype=dtype)
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(model, tok, params.batch_size, params.max_length, f"reward_model:{params.model}")

    def _encode(self, prompt: str, response: str) -> list[int]:
        if self.tok.chat_template:
            chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            ids = self.tok.apply_chat_template(chat, tokenize=True, return_dict=False)
        else:
            ids = self.tok(prompt, response)["input_ids"]
        return ids[:self.max_length] if self.max_length else ids

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self._encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        cut = sum(len(e) == self.max_length for e in encoded)
        if cut:
            log.warning("%d of %d texts reach max_length=%d and are scored on their first tokens", cut,
                        len(encoded), self.max_length)
        self.n_tokens += sum(map(len, encoded))
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = [0.0] * len(encoded)
        with torch.no_grad():
            for start in tqdm(range(0, len(order), self.batch_size), desc="reward model", unit="batch"):
                idx = order[start:start + self.batch_size]
                batch = self.tok.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
                logits = self.model(**batch.to(self.model.device)).logits[:, 0].float()
                for i, v in zip(idx, logits.tolist(), strict=True):
                    out[i] = round(v, 6)
        return out


def make_judge(params: JudgeParams) -> Judge | None:
    """The configured gold judge; None for `none` (real data without one: gold metrics are null)."""
    if params.name == "none":
        return None
    if params.name == "vader":
        return VaderJudge(params)
    if params.name == "tone":
        return ToneJudge(params)
    if params.name == "reward_model":
        return RewardModelJudge.from_params(params)
    raise ValueError(f"judge.name: unknown judge {params.name!r}")
