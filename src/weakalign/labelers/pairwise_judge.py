"""The `judge` labeler: a prompted pairwise judge, the base model asked zero-shot which response is better.

TRL 1.x no longer ships judges, so this one is ours. Each pair is asked twice, with response_1 shown as "A" and
then as "B", because small models favour one position. One asking gives the log-odds of the judge's next token
being "A" rather than "B" (a single forward pass, no sampling). The label is the response that both orders prefer;
where they disagree the pair is a tie (label None) and the `judge` feedback source leaves it out. A prompt too long
for `label_judge.max_length` is not judged (label None, counted).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from weakalign.modeling.models import bf16_usable
from weakalign.records.resume import BatchLog
from weakalign.records.schema import JudgeLabel

log = logging.getLogger(__name__)

TEMPLATE = (
    "Here is a request and two responses to it.\n\n"
    "Request:\n{prompt}\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Which response is better: more helpful, fluent and on topic? Answer with one letter, A or B."
)


class Verdicts(NamedTuple):
    labels: list[JudgeLabel]
    n_too_long: int
    n_tokens: int  # tokens run (the cost: 2 N FLOPs each)
    a_share: float | None  # share of the judged orderings whose answer was "A" (position bias; 0.5 is none)


def letter_ids(tok: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Token ids of the answers "A" and "B"; each must be a single token."""
    ids = [tok.encode(x, add_special_tokens=False) for x in ("A", "B")]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"the judge's tokenizer splits 'A' or 'B' into several tokens ({ids}); it cannot answer "
                         "with one token")
    return ids[0][0], ids[1][0]


def encode(tok: PreTrainedTokenizerBase, prompt: str, a: str, b: str) -> list[int]:
    """The judge prompt as one user turn, ending where the model's answer begins."""
    chat = [{"role": "user", "content": TEMPLATE.format(prompt=prompt, a=a, b=b)}]
    return tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=False)


def log_odds(model: PreTrainedModel, rows: list[list[int]], pad_id: int, ab: tuple[int, int]) -> list[float]:
    """log P("A") - log P("B") for the next token after each row, batched with left padding.

    Explicit positions keep left padding from shifting the real tokens; only the last position is projected onto
    the vocabulary (logits_to_keep=1)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(r), 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1].float()
    return (logits[:, ab[0]] - logits[:, ab[1]]).tolist()  # the softmax's normaliser cancels


@torch.no_grad()
def judge_pairs(model: PreTrainedModel, tok: PreTrainedTokenizerBase, pairs: list[tuple[str, str, str, str]],
                batch_size: int, max_length: int, bf16: bool, partial: BatchLog | None = None) -> Verdicts:
    """Verdicts on (pair_id, prompt, response_1, response_2), in input order.

    Both orderings of every pair are queued, sorted by length and batched; with `partial`, finished batches are
    appended to it and not recomputed (a killed run resumes with the same results)."""
    ab = letter_ids(tok)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = []
    for _, prompt, y1, y2 in pairs:
        rows += [encode(tok, prompt, y1, y2), encode(tok, prompt, y2, y1)]
    fits = [len(r) <= max_length for r in rows]
    todo = sorted((i for i in range(len(rows)) if fits[i]), key=lambda i: (len(rows[i]), i))
    model.eval()
    done = partial.done if partial is not None else {}
    scores: list[float | None] = [None] * len(rows)
    for b, s in enumerate(tqdm(range(0, len(todo), batch_size), desc="pairwise judge", unit="batch")):
        idx = todo[s:s + batch_size]
        if b in done:
            result = done[b]
        else:
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16_usable(bf16)):
                result = log_odds(model, [rows[i] for i in idx], pad_id, ab)
            if partial is not None:
                partial.add(b, result)
        for i, v in zip(idx, result, strict=True):
            scores[i] = v
    labels, n_too_long = [], 0
    for k, (pair_id, *_) in enumerate(pairs):
        s12, s21 = scores[2 * k], scores[2 * k + 1]
        if s12 is None or s21 is None:
            n_too_long += 1
            labels.append(JudgeLabel(pair_id=pair_id, log_odds_12=None, log_odds_21=None, margin=None, label=None))
            continue
        # Order 1 votes for response_1 if it answers A (s12 > 0); order 2 votes for response_1 if it answers B.
        vote_1, vote_2 = (1 if s12 > 0 else 2), (1 if s21 < 0 else 2)
        labels.append(JudgeLabel(pair_id=pair_id, log_odds_12=round(s12, 6), log_odds_21=round(s21, 6),
                                 margin=round((s12 - s21) / 2, 6), label=vote_1 if vote_1 == vote_2 else None))
    judged = [v for v in scores if v is not None]
    if n_too_long:
        log.warning("%d of %d pairs exceed label_judge.max_length=%d and are not judged", n_too_long, len(pairs),
                    max_length)
    return Verdicts(labels, n_too_long, sum(len(rows[i]) for i in todo),
                    round(sum(v > 0 for v in judged) / len(judged), 4) if judged else None)
