"""The weak teacher's implicit reward r(x, y) = beta * [log pi_weak(y|x) - log pi_ref(y|x)].

The labeler's math is the trainer's math: the tokenization (chat template, prompt/completion boundary,
`max_length` truncation) is TRL's own `DPOTrainer._prepare_dataset`, and the per-token log-probs come from the
fused LM head TRL puts on both models (the one `compute_ref_log_probs` uses). So `reward_1`/`reward_2` here are
the `rewards/chosen`/`rewards/rejected` the trainer would log for the pair (response_1 as "chosen"), which
tests/test_rewards.py checks against `DPOTrainer.evaluate` and a hand computation.

What differs from TRL is only the order of work (docs/PERFORMANCE.md): TRL scores prompt + chosen and
prompt + rejected as two full rows; here each batch runs the shared prompt once, keeps its KV cache, and scores
both responses as continuations of it (prefix reuse). With prompts of ~51 tokens and responses of ~37 that is
125 instead of 176 tokens per pair and model. Pairs are bucketed by length so batches pad little.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOTrainer

from weakalign.config.params import DPO
from weakalign.modeling.models import known_deprecations
from weakalign.records.resume import BatchLog
from weakalign.training.dpo import dpo_config, preference_dataset
from weakalign.training.harness import score_completions_only

log = logging.getLogger(__name__)


class Rewards(NamedTuple):
    reward_1: list[float]
    reward_2: list[float]
    n_truncated: int  # pairs whose prompt + longer response exceeds max_length (TRL truncates them)
    n_tokens: int = 0  # non-padding tokens run per model (the labeling cost: 2 N FLOPs each, for each model)


def _pad(rows: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r, dtype=torch.long), 1
    return ids, mask


def response_logps(model: PreTrainedModel, batch: list[tuple[list[int], list[int], list[int]]], pad_id: int,
                   device: torch.device) -> torch.Tensor:
    """log pi(y | x) summed over the response tokens, for both responses of each (prompt_ids, ids_1, ids_2): [B, 2].

    The prompt minus its last token runs once (left-padded, so every row's cache ends at the same slot); its KV
    cache is repeated for the two responses, which run as right-padded continuations starting with the prompt's
    last token, whose output predicts the first response token. `model` must carry TRL's fused LM head.
    """
    head, ys = [p[:-1] for p, _, _ in batch], [[p[-1], *y] for p, a, b in batch for y in (a, b)]
    head_ids, head_mask = _pad(head, pad_id, left=True)
    head_ids, head_mask = head_ids.to(device), head_mask.to(device)
    # Explicit positions: left padding must not shift the real tokens' positions (they start at 0, as in TRL).
    head_pos = (head_mask.cumsum(-1) - 1).clamp(min=0)
    cache = model.base_model(input_ids=head_ids, attention_mask=head_mask, position_ids=head_pos,
                             use_cache=True).past_key_values
    cache.batch_repeat_interleave(2)  # row 2i and 2i+1: pair i's two responses
    y_ids, y_mask = _pad(ys, pad_id, left=False)
    y_ids, y_mask = y_ids.to(device), y_mask.to(device)
    start = torch.tensor([len(p) - 1 for p, _, _ in batch], device=device).repeat_interleave(2)
    y_pos = start[:, None] + torch.arange(y_ids.shape[1], device=device)
    labels = y_ids.masked_fill(y_mask == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is input, not scored
    out = model(input_ids=y_ids, attention_mask=torch.cat([head_mask.repeat_interleave(2, 0), y_mask], dim=1),
                position_ids=y_pos, past_key_values=cache, labels=labels, fused_lm_head=True)
    return out.log_probs.float().sum(-1).view(-1, 2)


def _as_trained(ds, max_length: int | None) -> tuple[list[tuple[list, list, list]], int]:
    """(prompt, response_1, response_2) token ids of each tokenized pair, cut as TRL's collator cuts them in
    training (the first max_length tokens, truncation_mode keep_start), and how many were cut."""
    rows, n_truncated = [], 0
    for p, a, b in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True):
        if max_length is not None and len(p) + max(len(a), len(b)) > max_length:
            n_truncated += 1
            a, b = a[:max_length - len(p)], b[:max_length - len(p)]
        rows.append((p, a, b))
    if n_truncated:
        log.warning("%d of %d pairs exceed max_length=%s and are scored on their first %s tokens",
                    n_truncated, len(rows), max_length, max_length)
    return rows, n_truncated


@torch.no_grad()
@known_deprecations()
def implicit_rewards(policy: PreTrainedModel, ref: PreTrainedModel | None, tok: PreTrainedTokenizerBase,
                     triples: list[tuple[str, str, str]], dpo: DPO, batch_size: int, seed: int = 0,
                     partial: BatchLog | None = None) -> Rewards:
    """Rewards of the two responses of each (prompt, response_1, response_2), in input order.

    `ref` None: `policy` is a PEFT model (a LoRA weak teacher) and the reference is its base with the adapter
    switched off, as in TRL's DPO training under LoRA.

    With `partial`, every finished batch is appended to it and batches it already holds are not recomputed (a
    killed run resumes); batches are fixed by the inputs alone, so the results are the same either way.
    """
    score_completions_only()  # the fused LM head scores the response positions only, on CPU too (training/harness.py)
    with tempfile.TemporaryDirectory(prefix="weakalign-label-") as tmp:
        # The trainer tokenizes exactly as training does and puts TRL's fused LM head on both models.
        lora = ref is None
        # Under LoRA the trainer gets the adapted module itself (the adapter's layers sit inside it), with no
        # reference (precompute: TRL loads none); the adapter is switched off around the reference pass below.
        model = policy.get_base_model() if lora else policy
        args = dpo_config(dpo, seed, tmp, precompute_ref_log_probs=lora, save_strategy="no")
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=preference_dataset(triples),
                             processing_class=tok)
        ds = trainer.train_dataset
        if len(ds) != len(triples):
            raise ValueError(f"{len(triples) - len(ds)} pairs have a prompt longer than max_length="
                             f"{dpo.max_length}; raise max_length or shorten the prompts")
        rows, n_truncated = _as_trained(ds, dpo.max_length)
        # Bucket by prompt, then response length, so both passes of a batch pad little; input order is restored.
        order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), max(map(len, rows[i][1:])), i))
        pad_id = trainer.data_collator.pad_token_id  # the token TRL pads with (never scored: masked)
        policy.eval()
        if not lora:
            ref.eval()
        done = partial.done if partial is not None else {}
        r1, r2 = [], []
        starts = range(0, len(order), batch_size)
        for b, s in enumerate(tqdm(starts, desc="implicit rewards", unit="batch")):
            if b not in done:
                batch = [rows[i] for i in order[s:s + batch_size]]
                with trainer.accelerator.autocast():  # bf16 autocast when dpo.bf16, as in training
                    pol = response_logps(model, batch, pad_id, model.device)
                    reference = model if lora else ref
                    with policy.disable_adapter() if lora else contextlib.nullcontext():
                        diff = pol - response_logps(reference, batch, pad_id, reference.device)
                result = [(dpo.beta * diff[:, 0]).tolist(), (dpo.beta * diff[:, 1]).tolist()]
                if partial is not None:
                    partial.add(b, result)
            else:
                result = done[b]
            r1 += result[0]
            r2 += result[1]
    out1, out2 = [0.0] * len(rows), [0.0] * len(rows)
    for pos, i in enumerate(order):
        out1[i], out2[i] = r1[pos], r2[pos]
    # Per pair: the prompt head once, then each response after the prompt's last token (response_logps).
    n_tokens = sum(len(p) - 1 + len(a) + 1 + len(b) + 1 for p, a, b in rows)
    return Rewards(out1, out2, n_truncated, n_tokens)


def log_ratios(policy: PreTrainedModel, ref: PreTrainedModel, tok: PreTrainedTokenizerBase,
               triples: list[tuple[str, str, str]], dpo: DPO, batch_size: int,
               partial: BatchLog | None = None) -> tuple[list[float], list[float]]:
    """log pi(y|x) - log ref(y|x) (beta 1) for both responses of each (prompt, y_1, y_2): the implicit-reward
    computation with beta = 1, so the numbers are the trainer's own log-probs (tokenization, chat template).
    Nothing is truncated: test prompts may be longer than training's max_length (HH-RLHF dialogues are)."""
    out = implicit_rewards(policy, ref, tok, triples, dpo.model_copy(update={"beta": 1.0, "max_length": None}),
                           batch_size, partial=partial)
    return out.reward_1, out.reward_2
