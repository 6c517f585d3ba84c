"""The weak teacher's implicit reward r(x, y) = beta * [log pi_weak(y|x) - log pi_ref(y|x)].

The labeler's math is the trainer's math: tokenization (chat template, prompt/completion boundary), collation and
the sum of log-probs over the response tokens are TRL's own `DPOTrainer` code (`_prepare_dataset`,
`data_collator`, `compute_ref_log_probs`), called once with the weak model and once with its reference. So
`reward_1`/`reward_2` here are exactly the `rewards/chosen`/`rewards/rejected` the trainer would log for the pair
(response_1 as "chosen"), which tests/test_rewards.py checks.
"""

from __future__ import annotations

import logging
import tempfile
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOTrainer

from .dpo import dpo_config, preference_dataset
from .params import DPO
from .resume import BatchLog

log = logging.getLogger(__name__)


class Rewards(NamedTuple):
    reward_1: list[float]
    reward_2: list[float]
    n_truncated: int  # pairs whose prompt + longer response exceeds max_length (TRL truncates them)


@torch.no_grad()
def implicit_rewards(policy: PreTrainedModel, ref: PreTrainedModel, tok: PreTrainedTokenizerBase,
                     triples: list[tuple[str, str, str]], dpo: DPO, batch_size: int, seed: int = 0,
                     partial: BatchLog | None = None) -> Rewards:
    """Rewards of the two responses of each (prompt, response_1, response_2), in input order.

    With `partial`, every finished batch is appended to it and batches it already holds are not recomputed (a
    killed run resumes); batches are fixed by the inputs alone, so the results are the same either way.
    """
    with tempfile.TemporaryDirectory(prefix="weakalign-label-") as tmp:
        args = dpo_config(dpo, seed, tmp, precompute_ref_log_probs=False, per_device_eval_batch_size=batch_size,
                          save_strategy="no")
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=preference_dataset(triples),
                             processing_class=tok)
        ds = trainer.train_dataset
        if len(ds) != len(triples):
            raise ValueError(f"{len(triples) - len(ds)} pairs have a prompt longer than max_length="
                             f"{dpo.max_length}; raise max_length or shorten the prompts")
        # Bucket by length so batches pad little; results are put back in input order.
        lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"],
                                                                    ds["rejected_ids"], strict=True)]
        n_truncated = sum(n > dpo.max_length for n in lengths) if dpo.max_length is not None else 0
        if n_truncated:
            log.warning("%d of %d pairs exceed max_length=%s and are scored on their first %s tokens",
                        n_truncated, len(ds), dpo.max_length, dpo.max_length)
        order = sorted(range(len(ds)), key=lambda i: (lengths[i], i))
        loader = DataLoader(ds.select(order).select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]),
                            batch_size=batch_size, shuffle=False, collate_fn=trainer.data_collator)
        policy.eval(), ref.eval()
        r1, r2 = [], []
        done = partial.done if partial is not None else {}
        for b, batch in enumerate(tqdm(loader, desc="implicit rewards", unit="batch")):
            if b not in done:
                batch = {k: v.to(policy.device) for k, v in batch.items()}
                pol_1, pol_2 = trainer.compute_ref_log_probs(policy, batch)  # TRL's log-prob sum, any model
                ref_1, ref_2 = trainer.compute_ref_log_probs(ref, batch)
                result = [(dpo.beta * (pol_1.float() - ref_1.float())).tolist(),
                          (dpo.beta * (pol_2.float() - ref_2.float())).tolist()]
                if partial is not None:
                    partial.add(b, result)
            else:
                result = done[b]
            r1 += result[0]
            r2 += result[1]
    out1, out2 = [0.0] * len(ds), [0.0] * len(ds)
    for pos, i in enumerate(order):
        out1[i], out2[i] = r1[pos], r2[pos]
    return Rewards(out1, out2, n_truncated)
