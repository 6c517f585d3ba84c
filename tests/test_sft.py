"""The optional SFT stage: TRL's SFTTrainer on D_l's chosen responses, and where later stages start from."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from weakalign.config.params import Lora, SFTFields
from weakalign.modeling.models import is_adapter, load_model, load_tokenizer
from weakalign.modeling.saved_models import save_model
from weakalign.records.io import read_metrics
from weakalign.training import sft

PAIRS = [(f"Describe item {i}.", f"Item {i} is great, I love it.") for i in range(8)]


def _cfg(**kw) -> SFTFields:
    return SFTFields(**{"learning_rate": 3e-3, "num_train_epochs": 3, "per_device_train_batch_size": 4,
                        "warmup_steps": 0, "logging_steps": 1, "bf16": False, "max_length": 96,
                        "save_strategy": "no", "activation_checkpointing": False, **kw})


def _logp(model, tok, prompt: str, response: str) -> float:
    user = [{"role": "user", "content": prompt}]
    p = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=True,
                                   return_dict=False)
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
    return logp[len(p) - 1:].sum().item()


def test_sft_raises_the_likelihood_of_the_chosen_responses(tiny_dir, tmp_path):
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    before = _logp(model, tok, "Describe item 100.", "Item 100 is great, I love it.")
    model, summary = sft.train(model, tok, PAIRS, _cfg(), seed=0, live_dir=tmp_path / "live",
                               work_dir=tmp_path / "work", model_id="tiny")
    after = _logp(model, tok, "Describe item 100.", "Item 100 is great, I love it.")  # held out
    assert after > before + 5, (before, after)
    assert summary["final_loss"] < summary["first_loss"] and summary["steps"] == 6
    assert summary["n_examples"] == 8 and summary["n_examples_truncated"] == 0 and summary["train_tokens"] > 0
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()


def test_sft_loss_covers_the_responses_only(tiny_dir, tmp_path):
    """TRL's collator labels the response tokens only (the prompt's are -100): no loss on the prompt."""
    from trl import SFTConfig, SFTTrainer

    from weakalign.training.harness import trainer_kwargs

    tok = load_tokenizer(tiny_dir)
    trainer = SFTTrainer(model=load_model(tiny_dir), args=SFTConfig(**trainer_kwargs(_cfg(), 0, str(tmp_path))),
                         train_dataset=sft.sft_dataset(PAIRS[:1]), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    n_response = len(tok.apply_chat_template(
        [{"role": "user", "content": PAIRS[0][0]}, {"role": "assistant", "content": PAIRS[0][1]}],
        tokenize=True, return_dict=False)) - len(tok.apply_chat_template(
            [{"role": "user", "content": PAIRS[0][0]}], add_generation_prompt=True, tokenize=True, return_dict=False))
    labels = batch["labels"][0]
    assert int((labels != -100).sum()) == n_response < len(labels)
    assert (labels[:len(labels) - n_response] == -100).all()


def test_lora_sft_saves_an_adapter_that_loads_merged(tiny_dir, tmp_path):
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    model, _ = sft.train(model, tok, PAIRS, _cfg(learning_rate=2e-2), seed=0, live_dir=tmp_path / "live",
                         work_dir=tmp_path / "work", model_id="tiny", lora=Lora(use_peft=True, lora_r=4))
    save_model(model, tok, tmp_path / "sft", base=str(tiny_dir))
    assert is_adapter(tmp_path / "sft")
    merged = load_model(tmp_path / "sft")
    ids = tok("Describe item 3.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model.eval()(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("enabled, weak, target_start, weak_start", [
    (False, "base", "models/base", "models/base"),
    (False, "tiny-random", "models/base", "tiny-random"),
    (True, "base", "models/sft/target", "models/sft/target"),  # one SFT serves both
    (True, "tiny-random", "models/sft/target", "models/sft/weak"),
])
def test_later_stages_start_from_the_sft_models_only_when_enabled(enabled, weak, target_start, weak_start,
                                                                  shipped):
    params = shipped({"sft": {"enabled": enabled}, "train_weak": {"model": weak}})
    assert params.target_start("models/base", "models/sft/target") == target_start
    assert params.weak_start("models/base", "models/sft/target", "models/sft/weak") == weak_start


def test_switched_off_the_stage_writes_notes_and_null_metrics_in_seconds(root, tmp_path):
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())  # sft.enabled: false, as shipped
    out = subprocess.run(
        [sys.executable, str(root / "stages/sft.py"), "--base", "nowhere", "--labeled", "nowhere.jsonl",
         "--target-out", "t", "--weak-out", "w", "--metrics", "m.json", "--live", "live", "--checkpoints", "ck"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    metrics = read_metrics(tmp_path / "m.json")
    assert "enabled" not in json.loads((tmp_path / "m.json").read_text())  # a flag: bookkeeping, not a metric
    assert metrics["enabled"] is False and metrics["target_final_loss"] is None and metrics["weak_steps"] is None
    assert (tmp_path / "t" / "README").is_file() and (tmp_path / "w" / "README").is_file()
    assert (tmp_path / "live" / "README").is_file() and not (tmp_path / "ck").exists()
