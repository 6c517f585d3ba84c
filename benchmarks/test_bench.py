"""Benchmarks: our labeling, training and generation against the plain libraries, on SmolLM2-135M and real pairs.

    make bench        # after `make repro`; writes benchmarks/results.json and prints the ratios

Each case has an `ours` and a `baseline` test on the same inputs in the same run (pytest-benchmark times each;
medians of `rounds` runs). Baselines are the libraries as shipped: TRL without our CPU scoring patch
(`harness.plain_trl`), `DPOConfig` defaults apart from what fixes the loss trajectory, `model.generate` one prompt
at a time. FLOPs are counted from non-padding tokens (2 N per token forward, 6 N forward + backward), so the
model FLOPs utilisation (MFU) in the results is against useful work, relative to the bf16 matmul peak measured
in the same run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from weakalign.labelers.rewards import implicit_rewards
from weakalign.modeling.generation import chat_prompt, sample
from weakalign.modeling.models import load_model, load_tokenizer, n_params
from weakalign.training import dpo, harness

ROOT = Path(__file__).resolve().parents[1]
N_LABEL = 32      # pairs scored per labeling round
N_TRAIN_STEPS = 20
TRAIN_BATCH = 2   # pairs per step: 40 pairs per training run
N_GEN = 16        # test prompts per generation round
SHARED: dict = {}  # outputs of `ours` kept for the baseline's equivalence check


def _pair_tokens(tok, triples) -> int:
    """Non-padding tokens of prompt + response, both responses of every pair, through the chat template."""
    n = 0
    for prompt, a, b in triples:
        for resp in (a, b):
            n += len(tok.apply_chat_template(chat_prompt(prompt) + [{"role": "assistant", "content": resp}],
                                             tokenize=True, return_dict=False))
    return n


def test_matmul_peak(benchmark, record):
    """The machine's bf16 (and fp32) matmul peak, 2048 x 2048, all threads: the MFU denominator."""
    n, reps = 2048, 10
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)

    def run():
        for _ in range(reps):
            a @ b

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    bf16 = reps * 2 * n ** 3 / benchmark.stats.stats.median / 1e12
    af, bf = a.float(), b.float()
    import time

    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            af @ bf
        times.append(time.perf_counter() - t)
    fp32 = reps * 2 * n ** 3 / sorted(times)[1] / 1e12
    record("matmul_peak", "bf16", rate=round(bf16, 3), unit="TFLOP/s")
    record("matmul_peak", "fp32", rate=round(fp32, 3), unit="TFLOP/s")


# --- weak labeling ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labeler(params, base_dir, weak_dir, pairs):
    tok = load_tokenizer(weak_dir)
    triples = [(p.prompt, p.response_1, p.response_2) for p in pairs[:N_LABEL]]
    return tok, load_model(weak_dir), load_model(base_dir), triples


def test_labeling_ours(benchmark, record, params, labeler):
    tok, policy, ref, triples = labeler
    out = benchmark.pedantic(lambda: implicit_rewards(policy, ref, tok, triples, params.train_weak.dpo,
                                                      params.label_weak.batch_size), rounds=3, iterations=1)
    SHARED["labels"] = out
    med = benchmark.stats.stats.median
    record("labeling", "ours", rate=round(len(triples) / med, 3), unit="pairs/s", median_s=round(med, 2),
           n_pairs=len(triples), flops=2 * 2 * n_params(policy) * _pair_tokens(tok, triples),
           executed_flops=2 * 2 * n_params(policy) * out.n_tokens)  # tokens our labeler ran, per model


def test_labeling_trl_precompute(benchmark, record, params, labeler):
    """TRL's own way: a DPOTrainer with precompute_ref_log_probs scores every pair once with its reference; run it
    for the weak model and for its reference, and take beta * the difference. fp32, TRL's default batch size."""
    from trl import DPOConfig, DPOTrainer

    tok, policy, ref, triples = labeler
    beta = params.train_weak.dpo.beta

    def run():
        logps = []
        with harness.plain_trl(), tempfile.TemporaryDirectory() as tmp:
            for model in (policy, ref):
                cfg = DPOConfig(output_dir=tmp, use_cpu=True, bf16=False, precompute_ref_log_probs=True,
                                beta=beta, max_length=params.train_weak.dpo.max_length, report_to=[],
                                disable_tqdm=True)
                ds = DPOTrainer(model=model, args=cfg, train_dataset=dpo.preference_dataset(triples),
                                processing_class=tok).train_dataset
                logps.append((ds["ref_chosen_logps"], ds["ref_rejected_logps"]))
        (p1, p2), (r1, r2) = logps
        return ([beta * (a - b) for a, b in zip(p1, r1, strict=True)],
                [beta * (a - b) for a, b in zip(p2, r2, strict=True)])

    r1, r2 = benchmark.pedantic(run, rounds=3, iterations=1)
    med = benchmark.stats.stats.median
    figures = dict(rate=round(len(triples) / med, 3), unit="pairs/s", median_s=round(med, 2), n_pairs=len(triples),
                   flops=2 * 2 * n_params(policy) * _pair_tokens(tok, triples))
    if "labels" in SHARED:  # same labels? (ours runs bf16, TRL's default here is fp32)
        ours = SHARED["labels"]
        figures["max_abs_reward_diff_vs_ours"] = round(max(
            max(abs(a - b) for a, b in zip(ours.reward_1, r1, strict=True)),
            max(abs(a - b) for a, b in zip(ours.reward_2, r2, strict=True))), 4)
        figures["label_agreement_with_ours"] = round(sum(
            (a1 >= a2) == (b1 >= b2) for a1, a2, b1, b2 in zip(ours.reward_1, ours.reward_2, r1, r2, strict=True)
        ) / len(r1), 4)
    record("labeling", "baseline", **figures)


# --- DPO training -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_data(base_dir, pairs):
    tok = load_tokenizer(base_dir)
    use = pairs[:N_TRAIN_STEPS * TRAIN_BATCH]
    triples = dpo.triples(use, {p.id: p.human for p in use})
    return tok, triples, _pair_tokens(tok, triples)


def _loss_curve(live: Path) -> list[float]:
    lines = (live / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[1]) for line in lines]


def test_training_ours(benchmark, record, params, base_dir, train_data):
    tok, triples, tokens = train_data
    cfg = params.align.dpo.model_copy(update=dict(max_steps=N_TRAIN_STEPS, per_device_train_batch_size=TRAIN_BATCH,
                                                  gradient_accumulation_steps=1, logging_steps=1,
                                                  save_strategy="no"))
    tmp = Path(tempfile.mkdtemp(prefix="weakalign-bench-"))

    def run(model):
        shutil.rmtree(tmp / "live", ignore_errors=True)
        dpo.train(model, tok, triples, cfg, params.base.seed, tmp / "live", tmp / "work", "bench")

    benchmark.pedantic(run, setup=lambda: ((load_model(base_dir),), {}), rounds=3, iterations=1)
    SHARED["loss"] = _loss_curve(tmp / "live")
    shutil.rmtree(tmp)
    med = benchmark.stats.stats.median
    n = n_params(load_model(base_dir))
    record("training", "ours", rate=round(tokens / med, 1), unit="tokens/s", median_s=round(med, 2),
           steps=N_TRAIN_STEPS, pairs_per_step=TRAIN_BATCH, tokens=tokens, flops=8 * n * tokens,
           final_loss=SHARED["loss"][-1])


def test_training_trl_default(benchmark, record, params, base_dir, train_data):
    """DPOTrainer as shipped (fp32, TRL's default gradient checkpointing and per-step reference forward), with
    only what fixes the loss trajectory set to ours: seed, learning rate, schedule, beta, batch, max_length."""
    from trl import DPOConfig, DPOTrainer

    tok, triples, tokens = train_data
    a = params.align.dpo
    losses: list[float] = []

    def run(model):
        with harness.plain_trl(), tempfile.TemporaryDirectory() as tmp:
            cfg = DPOConfig(output_dir=tmp, use_cpu=True, bf16=False, seed=params.base.seed,
                            data_seed=params.base.seed, report_to=[], save_strategy="no", disable_tqdm=True,
                            max_steps=N_TRAIN_STEPS, per_device_train_batch_size=TRAIN_BATCH, logging_steps=1,
                            learning_rate=a.learning_rate, lr_scheduler_type=a.lr_scheduler_type,
                            warmup_steps=a.warmup_steps, beta=a.beta, max_length=a.max_length)
            trainer = DPOTrainer(model=model, args=cfg, train_dataset=dpo.preference_dataset(triples),
                                 processing_class=tok)
            trainer.train()
            losses[:] = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    benchmark.pedantic(run, setup=lambda: ((load_model(base_dir),), {}), rounds=3, iterations=1)
    med = benchmark.stats.stats.median
    n = n_params(load_model(base_dir))
    figures = dict(rate=round(tokens / med, 1), unit="tokens/s", median_s=round(med, 2), steps=N_TRAIN_STEPS,
                   pairs_per_step=TRAIN_BATCH, tokens=tokens, flops=8 * n * tokens, final_loss=losses[-1])
    if "loss" in SHARED:  # the same trajectory, to bf16 autocast noise
        figures["max_abs_loss_diff_vs_ours"] = round(max(abs(x - y) for x, y in zip(SHARED["loss"], losses,
                                                                                   strict=True)), 4)
    record("training", "baseline", **figures)


# --- generation ---------------------------------------------------------------------------------------------------

def _new_tokens(tok, texts: list[str]) -> int:
    return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)


def test_generation_ours(benchmark, record, params, base_dir, test_prompts):
    tok, model = load_tokenizer(base_dir), load_model(base_dir)
    prompts = test_prompts[:N_GEN]
    out = benchmark.pedantic(lambda: sample(model, tok, prompts, params.evaluate, seed=params.base.seed),
                             rounds=3, iterations=1)
    med = benchmark.stats.stats.median
    n = _new_tokens(tok, [s[0] for s in out])
    record("generation", "ours", rate=round(n / med, 1), unit="new tokens/s", median_s=round(med, 2),
           prompts=len(prompts), new_tokens=n)


def test_generation_one_at_a_time(benchmark, record, params, base_dir, test_prompts):
    """`model.generate` per prompt, fp32, same sampling settings."""
    tok, model = load_tokenizer(base_dir), load_model(base_dir).eval()
    prompts = test_prompts[:N_GEN]
    g = params.evaluate

    @torch.no_grad()
    def run():
        torch.manual_seed(params.base.seed)
        texts = []
        for p in prompts:
            ids = tok.apply_chat_template(chat_prompt(p), add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            out = model.generate(**ids, do_sample=True, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                                 max_new_tokens=g.max_new_tokens, pad_token_id=tok.pad_token_id)
            texts.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
        return texts

    texts = benchmark.pedantic(run, rounds=3, iterations=1)
    med = benchmark.stats.stats.median
    n = _new_tokens(tok, texts)
    record("generation", "baseline", rate=round(n / med, 1), unit="new tokens/s", median_s=round(med, 2),
           prompts=len(prompts), new_tokens=n)


# --- dvc ----------------------------------------------------------------------------------------------------------

def _dvc(*args: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(bin_dir / "dvc"), *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          check=True)


def test_dvc_repro_noop(benchmark, record):
    if _dvc("status", "--json").stdout.strip() not in ("{}", ""):
        pytest.skip("the pipeline is not up to date: run `make repro` first")
    out = benchmark.pedantic(lambda: _dvc("repro"), rounds=5, iterations=1)
    assert "Running stage" not in out.stdout
    med = benchmark.stats.stats.median
    record("dvc_repro_noop", "ours", seconds=round(med, 2), unit="s")


def test_dvc_repro_evaluate_stale(benchmark, record):
    """Only `evaluate` to run (forced; its outputs come out identical, so nothing downstream goes stale)."""
    if _dvc("status", "--json").stdout.strip() not in ("{}", ""):
        pytest.skip("the pipeline is not up to date: run `make repro` first")
    benchmark.pedantic(lambda: _dvc("repro", "--force", "--single-item", "evaluate"), rounds=1, iterations=1)
    record("dvc_repro_evaluate", "ours", seconds=round(benchmark.stats.stats.median, 1), unit="s")
    assert _dvc("status", "--json").stdout.strip() in ("{}", "")
