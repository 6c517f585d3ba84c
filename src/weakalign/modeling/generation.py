"""Batched sampling from a causal LM with its chat template: used to make response pairs and to evaluate."""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from weakalign.config.params import Generation
from weakalign.modeling.models import bf16_usable
from weakalign.records.resume import BatchLog

log = logging.getLogger(__name__)


def chat_prompt(prompt: str) -> list[dict]:
    """Every prompt is one user turn; trainer, labeler and sampler all format it through the chat template."""
    return [{"role": "user", "content": prompt}]


@torch.no_grad()
def sample(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str], gen: Generation, seed: int,
           n_samples: int = 1, desc: str = "generate", partial: BatchLog | None = None) -> list[list[str]]:
    """`n_samples` sampled responses for each prompt, in the prompts' order.

    Prompts are sorted by length so that each batch pads little; each batch is seeded from (seed, batch index),
    so results do not depend on anything but the inputs and the params. With `partial`, finished batches are
    appended to it and batches it already holds are skipped: a killed run resumes with the same results.
    """
    model.eval()
    if bf16_usable(gen.bf16):
        model = model.to(torch.bfloat16)
    encoded = [tok.apply_chat_template(chat_prompt(p), add_generation_prompt=True, tokenize=True, return_dict=False)
               for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
    out: list[list[str]] = [[] for _ in prompts]
    pad_side = tok.padding_side
    tok.padding_side = "left"  # decoder-only generation continues from the right end
    try:
        for b, start in enumerate(tqdm(range(0, len(order), gen.batch_size), desc=desc, unit="batch")):
            idx = order[start:start + gen.batch_size]
            if partial is not None and b in partial.done:
                for j, i in enumerate(idx):
                    out[i] = partial.done[b][j]
                continue
            batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(model.device)
            torch.manual_seed(seed * 100_003 + b)
            ids = model.generate(
                **batch, do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
                max_new_tokens=gen.max_new_tokens, num_return_sequences=n_samples, pad_token_id=tok.pad_token_id,
            )
            texts = tok.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[j * n_samples:(j + 1) * n_samples]]
            if partial is not None:
                partial.add(b, [out[i] for i in idx])
    finally:
        tok.padding_side = pad_side
    return out
