"""PEFT LoRA as a params switch: the weak teacher, the targets and the reward model.

What must hold: only the adapter trains; the saved model is the adapter, naming its base; loading it gives the
merged model; and the DPO reference is the base with the adapter switched off, in training (the first step's
rewards are exactly zero: policy = reference) and when the weak teacher labels D_u (equal to the rewards of the
merged model against a separate copy of the base).
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from weakalign.config.params import DPO, Lora, ParamsError, Reward
from weakalign.labelers.rewards import implicit_rewards
from weakalign.modeling.models import attach_adapter, is_adapter, load_model, load_tokenizer, lora_config
from weakalign.modeling.saved_models import save_model
from weakalign.training import dpo

TRIPLES = [("Rate the film.", "A wonderful, warm and funny film.", "Dull."),
           ("Rate the soup.", "Delicious and hot, the best in town.", "Cold."),
           ("Rate the book.", "A gripping story I loved to the end.", "Boring."),
           ("Rate the phone.", "Fast, light and a joy to use.", "Broke.")]
LORA = Lora(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)


def test_lora_params_use_trl_model_config_names_and_reject_bad_values(shipped):
    cfg = lora_config(Lora(use_peft=True, lora_r=8, lora_target_modules=["q_proj", "v_proj"]), "CAUSAL_LM")
    assert cfg.r == 8 and cfg.lora_alpha == 32 and set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert str(cfg.task_type.value if hasattr(cfg.task_type, "value") else cfg.task_type) == "CAUSAL_LM"
    assert lora_config(Lora(), "CAUSAL_LM") is None  # off by default
    with pytest.raises(ParamsError, match=r"align\.lora\.lora_r"):
        shipped({"align": {"lora": {"use_peft": True, "lora_r": 0}}})
    with pytest.raises(ParamsError, match=r"train_weak\.lora\.rank: unknown key"):
        shipped({"train_weak": {"lora": {"rank": 8}}})


@pytest.fixture(scope="module")
def lora_weak(tiny_dir, tmp_path_factory):
    """A LoRA weak teacher DPO-trained on the tiny model, saved as an adapter; and its training summary."""
    tmp = tmp_path_factory.mktemp("lora")
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    cfg = DPO(learning_rate=2e-2, max_steps=8, per_device_train_batch_size=4, warmup_steps=0, logging_steps=1,
              bf16=False, max_length=64, save_strategy="no", activation_checkpointing=False)
    trained, summary = dpo.train(model, tok, TRIPLES, cfg, seed=0, live_dir=tmp / "live", work_dir=tmp / "work",
                                 model_id="tiny", lora=LORA)
    save_model(trained, tok, tmp / "weak", base=str(tiny_dir))
    return tmp / "weak", trained, summary


def test_lora_dpo_trains_only_the_adapter_and_saves_it_naming_its_base(tiny_dir, lora_weak):
    out, trained, summary = lora_weak
    assert summary["learned"], summary
    assert is_adapter(out) and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir)
    # The base weights inside the PEFT model are untouched; only lora_A/lora_B moved.
    base = load_model(tiny_dir)
    inner = dict(trained.get_base_model().named_parameters())
    for name, p in base.named_parameters():
        key = name.replace(".weight", ".base_layer.weight") if name.replace(".weight", ".base_layer.weight") in inner \
            else name
        torch.testing.assert_close(inner[key], p)
    assert any(n for n, p in trained.named_parameters() if "lora_B" in n and p.abs().sum() > 0)


def test_under_lora_the_training_reference_is_the_base_with_the_adapter_off(lora_weak):
    """LoRA's B starts at zero, so at the first step the policy is the base: rewards and margins are exactly 0
    only if the reference is that base (a stale or different model would give nonzero rewards)."""
    out, _, _ = lora_weak
    rows = (out.parent / "live" / "plots" / "metrics" / "rewards" / "chosen.tsv").read_text().splitlines()
    first = float(rows[1].split("\t")[-1])
    assert first == 0.0


def test_loading_an_adapter_merges_it_and_the_labeler_uses_the_base_as_reference(tiny_dir, lora_weak):
    out, trained, _ = lora_weak
    tok = load_tokenizer(out)
    merged = load_model(out)  # base + adapter, merged: a plain model
    assert not hasattr(merged, "peft_config") or not merged.peft_config
    ids = tok("Rate the film.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, trained.eval()(ids).logits, atol=1e-4, rtol=1e-4)
    cfg = DPO(beta=0.5, bf16=False, max_length=None, precompute_ref_log_probs=False)
    # The labeler's LoRA path: one model, reference = adapter switched off.
    base = load_model(tiny_dir)
    with warnings.catch_warnings(record=True) as caught:  # PEFT's read of a deprecated name stays out of the log
        warnings.simplefilter("always")
        peft = attach_adapter(base, out)
    assert not [w for w in caught if "checkpointing" in str(w.message)]
    r1, r2, _, _ = implicit_rewards(peft, None, tok, TRIPLES, cfg, batch_size=3)
    # The full-weights path: the merged weak model against a separate copy of the base.
    f1, f2, _, _ = implicit_rewards(load_model(out), load_model(tiny_dir), tok, TRIPLES, cfg, batch_size=3)
    assert r1 == pytest.approx(f1, abs=1e-4) and r2 == pytest.approx(f2, abs=1e-4)
    assert max(abs(x) for x in r1 + r2) > 1e-3  # the adapter moved the model: rewards are not trivially zero
    # And the adapter is back on after labeling.
    with torch.no_grad():
        torch.testing.assert_close(peft(ids).logits, merged(ids).logits, atol=1e-4, rtol=1e-4)


def test_lora_reward_model_trains_adapters_and_its_score_head(tiny_dir, tmp_path):
    from weakalign.labelers.reward_model import score_pairs, train
    from weakalign.modeling.models import reward_model_from_lm

    triples = [(f"Review item {i}.", f"Great item {i}, I love it.", f"Bad item {i}, awful.") for i in range(8)]
    model, tok = reward_model_from_lm(str(tiny_dir), seed=0)
    head = model.score.weight.detach().clone()
    cfg = Reward(learning_rate=2e-2, num_train_epochs=4, per_device_train_batch_size=4, warmup_steps=0,
                 logging_steps=1, bf16=False, max_length=96, save_strategy="no", activation_checkpointing=False)
    model, summary = train(model, tok, triples, cfg, seed=0, live_dir=tmp_path / "live", work_dir=tmp_path / "w",
                           model_id="tiny", lora=LORA)
    assert hasattr(model, "peft_config") and summary["learned"], summary
    trained_heads = [p for n, p in model.named_parameters() if "score" in n and "modules_to_save" in n]
    assert trained_heads and not torch.allclose(trained_heads[0], head)
    r1, r2, _ = score_pairs(model, tok, triples, batch_size=4, max_length=96)
    assert all(a > b for a, b in zip(r1, r2, strict=True))


def test_a_pickled_adapter_is_refused_before_torch_load(tmp_path, lora_weak):
    out = lora_weak[0]
    bad = tmp_path / "adapter"
    shutil.copytree(out, bad)
    (bad / "adapter_model.safetensors").rename(bad / "adapter_model.bin")  # what a stranger's pickle looks like
    with pytest.raises(FileNotFoundError, match=r"has no adapter_model.safetensors \(only \['adapter_model.bin'\]\)"):
        load_model(bad)


def test_lora_target_modules_the_model_lacks_fail_before_training(tiny_dir):
    from weakalign.config.params import Lora

    model = load_model(tiny_dir)
    with pytest.raises(ValueError, match=r"lora.lora_target_modules: \['q_projj'\] are not modules of this model; its "
                                         r"linear layers are .*q_proj"):
        dpo.train(model, load_tokenizer(tiny_dir), TRIPLES, DPO(bf16=False), 0, "unused", "unused", "tiny",
                  Lora(use_peft=True, lora_target_modules=["q_projj", "v_proj"]))
