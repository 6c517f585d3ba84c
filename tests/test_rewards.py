"""The weak teacher's implicit reward: equal to a hand computation and to what TRL's DPOTrainer logs."""

from __future__ import annotations

import pytest
import torch

from weakalign.config.params import DPO
from weakalign.labelers.rewards import implicit_rewards
from weakalign.modeling.models import load_model, load_tokenizer

# Very different lengths, and a prompt ending in a space and a quote (a tokenizer-boundary edge case).
TRIPLES = [
    ("Say something nice.", "You are wonderful.", "No."),
    ('Continue this review: "The soup was cold and ', "the waiter never came back, so we left hungry and cross.",
     "it was still lovely"),
    ("Hi", "Hello! How can I help you today? I can answer questions, write, or chat.", "Hey there"),
]
BETA = 0.25


@pytest.fixture(scope="module")
def models(tiny_dir, tmp_path_factory):
    """A policy and a *different* reference (another seed), so rewards are far from zero."""
    from weakalign.modeling.models import TINY
    from weakalign.modeling.saved_models import save_model

    other = tmp_path_factory.mktemp("tiny_ref") / "model"
    save_model(load_model(TINY, seed=1), load_tokenizer(TINY), other)
    return load_tokenizer(tiny_dir), load_model(tiny_dir), load_model(other)


def _dpo(**kw):
    return DPO(**{"beta": BETA, "bf16": False, "max_length": None, "precompute_ref_log_probs": False, **kw})


def _hand_logp(model, tok, prompt: str, response: str) -> float:
    """log pi(response | prompt), written out: chat template, one forward, log-softmax, sum over response tokens."""
    user = [{"role": "user", "content": prompt}]
    prompt_ids = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tok.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=True,
                                       return_dict=False)
    assert full_ids[:len(prompt_ids)] == prompt_ids
    ids = torch.tensor([full_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    token_logp = logp.gather(-1, targets[:, None])[:, 0]
    return token_logp[len(prompt_ids) - 1:].sum().item()


def test_rewards_equal_hand_computation(models):
    tok, policy, ref = models
    r1, r2, n_trunc, _ = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=3)
    assert n_trunc == 0
    for (prompt, y1, y2), a, b in zip(TRIPLES, r1, r2):
        assert a == pytest.approx(BETA * (_hand_logp(policy, tok, prompt, y1) - _hand_logp(ref, tok, prompt, y1)),
                                  abs=1e-4)
        assert b == pytest.approx(BETA * (_hand_logp(policy, tok, prompt, y2) - _hand_logp(ref, tok, prompt, y2)),
                                  abs=1e-4)
    assert max(abs(x) for x in r1 + r2) > 0.01  # the test would be empty if the two models agreed


def test_rewards_do_not_depend_on_batching_or_order(models):
    tok, policy, ref = models
    a = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=1)
    b = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=3)
    c = implicit_rewards(policy, ref, tok, TRIPLES[::-1], _dpo(), batch_size=2)
    assert a[0] == pytest.approx(b[0], abs=1e-5) and a[1] == pytest.approx(b[1], abs=1e-5)
    assert a[0] == pytest.approx(c[0][::-1], abs=1e-5)


@pytest.mark.parametrize("max_length", [None, 48], ids=["whole", "truncated"])
def test_rewards_equal_dpo_trainer_metrics(models, tmp_path, max_length):
    """label_weak's rewards are the `rewards/chosen` / `rewards/rejected` TRL's DPOTrainer computes (y1 as chosen),
    also where TRL truncates prompt + response to max_length (48 cuts the two long responses here)."""
    from trl import DPOTrainer

    from weakalign.training.dpo import dpo_config, preference_dataset

    tok, policy, ref = models
    r1, r2, n_trunc, _ = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(max_length=max_length), batch_size=2)
    assert n_trunc == (0 if max_length is None else 2)
    for i, triple in enumerate(TRIPLES):
        ds = preference_dataset([triple])
        args = dpo_config(_dpo(max_length=max_length), 0, str(tmp_path / f"run{i}"), per_device_eval_batch_size=1)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, eval_dataset=ds,
                             processing_class=tok)
        m = trainer.evaluate()
        assert m["eval_rewards/chosen"] == pytest.approx(r1[i], abs=1e-4)
        assert m["eval_rewards/rejected"] == pytest.approx(r2[i], abs=1e-4)
        assert m["eval_rewards/margins"] == pytest.approx(r1[i] - r2[i], abs=1e-4)


def test_identical_models_give_zero_rewards(models):
    import copy

    tok, policy, _ = models
    r1, r2, *_ = implicit_rewards(policy, copy.deepcopy(policy), tok, TRIPLES, _dpo(), batch_size=3)
    assert max(abs(x) for x in r1 + r2) < 1e-6


def test_prompt_longer_than_max_length_is_an_error(models):
    tok, policy, ref = models
    with pytest.raises(ValueError, match="max_length"):
        implicit_rewards(policy, ref, tok, [("word " * 200, "a", "b")], DPO(beta=BETA, bf16=False, max_length=32),
                         batch_size=1)


def test_truncated_pairs_are_counted(models):
    tok, policy, ref = models
    long = ("Hi", "word " * 80, "short")
    res = implicit_rewards(policy, ref, tok, TRIPLES + [long], DPO(beta=BETA, bf16=False, max_length=64), 2)
    assert res.n_truncated == 1 and len(res.reward_1) == 4


def test_tokens_run_are_counted_for_the_labeling_cost(models):
    """n_tokens: per pair, the prompt once plus each response after the prompt's last token (chat template)."""
    tok, policy, ref = models
    want = 0
    for prompt, a, b in TRIPLES:
        user = [{"role": "user", "content": prompt}]
        p = len(tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False))
        full = [len(tok.apply_chat_template(user + [{"role": "assistant", "content": y}], tokenize=True,
                                            return_dict=False)) for y in (a, b)]
        want += (p - 1) + sum(f - p + 1 for f in full)
    assert implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=2).n_tokens == want


def test_rewards_do_not_depend_on_the_tokenizers_padding_side(models):
    """TRL's collator pads to the right whatever the tokenizer says; a left-padding tokenizer must not move a reward."""
    tok, policy, ref = models
    side = tok.padding_side
    try:
        tok.padding_side = "left"
        left = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=3)
        tok.padding_side = "right"
        right = implicit_rewards(policy, ref, tok, TRIPLES, _dpo(), batch_size=3)
    finally:
        tok.padding_side = side
    assert left.reward_1 == pytest.approx(right.reward_1, abs=1e-5)
    assert left.reward_2 == pytest.approx(right.reward_2, abs=1e-5)


def test_the_pipelines_bf16_path_stays_close_to_the_fp32_hand_computation(models):
    """label_weak runs with bf16 autocast: its rewards stay within 0.005 + 2% of the exact fp32 per-pair value
    (measured here: at most 0.0006 on rewards of 0.02-0.27), and no label flips outside that band."""
    tok, policy, ref = models
    r1, r2, *_ = implicit_rewards(policy, ref, tok, TRIPLES, DPO(beta=BETA, bf16=True, max_length=None,
                                                               precompute_ref_log_probs=False), batch_size=2)
    for (prompt, y1, y2), a, b in zip(TRIPLES, r1, r2, strict=True):
        exact = [BETA * (_hand_logp(policy, tok, prompt, y) - _hand_logp(ref, tok, prompt, y)) for y in (y1, y2)]
        for got, want in zip((a, b), exact, strict=True):
            assert abs(got - want) <= 0.005 + 0.02 * abs(want), (got, want)
        if abs(exact[0] - exact[1]) > 0.01 + 0.02 * (abs(exact[0]) + abs(exact[1])):
            assert (a >= b) == (exact[0] >= exact[1])


def test_prefix_reuse_equals_scoring_each_full_row(models):
    """The fast path (the prompt once, its KV cache reused for both responses) against the straightforward one
    (prompt + response as one row, one model call per row), on the same token ids, in one batch that mixes a
    1-token prompt head, a 1-token response, very different prompt lengths (left padding in the cached pass) and
    very different response lengths (right padding in the continuation). fp32: equal within 1e-4 nats."""
    import copy

    from trl.trainer.utils import add_fused_lm_head

    from weakalign.labelers.rewards import response_logps

    tok, policy, _ = models
    policy = copy.deepcopy(policy)  # the fused head is patched onto this copy only
    add_fused_lm_head(policy, outputs=())
    batch = [([5, 9], [17], list(range(20, 60))),
             (list(range(100, 160)), [7, 8, 9], [11]),
             (list(range(200, 230)), list(range(300, 335)), [40, 41])]
    got = response_logps(policy, batch, tok.pad_token_id, policy.device)

    def full_row(prompt, response):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logp = torch.log_softmax(policy(ids).logits[0, :-1].float(), dim=-1)
        return logp.gather(-1, ids[0, 1:, None])[len(prompt) - 1:, 0].sum().item()

    want = [[full_row(p, a), full_row(p, b)] for p, a, b in batch]
    assert sum(got.tolist(), []) == pytest.approx(sum(want, []), abs=1e-4)
