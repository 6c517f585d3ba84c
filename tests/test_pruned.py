"""Depth-pruned model references (`<ref>@layers=<k>`): a weaker teacher cut from the same weights.

What must hold: the pruned model is exactly the first k layers of its model (embeddings, final norm and LM head
kept), it saves and reloads as a k-layer model, it DPO-trains, SFT-trains and labels through the project's own
code paths, and a bad suffix or k fails early with the reference (or the params key) named.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from weakalign.config.params import DPO, Lora, ParamsError, SFTFields
from weakalign.labelers.rewards import implicit_rewards
from weakalign.modeling.models import (TINY, attach_adapter, is_adapter, load_model, load_tokenizer, n_params,
                                       parse_layers, prune_layers, reward_model_from_lm)
from weakalign.modeling.saved_models import save_model
from weakalign.training import dpo, sft

PRUNED = f"{TINY}@layers=1"  # tiny-random has 2 decoder layers
TRIPLES = [("Rate the film.", "A wonderful, warm and funny film.", "Dull."),
           ("Rate the soup.", "Delicious and hot, the best in town.", "Cold."),
           ("Rate the book.", "A gripping story I loved to the end.", "Boring."),
           ("Rate the phone.", "Fast, light and a joy to use.", "Broke.")]
IDS = torch.tensor([[1, 5, 9, 200, 3000, 17, 42]])


def _dpo(**kw) -> DPO:
    return DPO(**{"learning_rate": 2e-2, "max_steps": 2, "per_device_train_batch_size": 2, "warmup_steps": 0,
                  "logging_steps": 1, "bf16": False, "max_length": 64, "save_strategy": "no",
                  "activation_checkpointing": False, **kw})


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model.eval()(ids).logits


# Most tests cut the saved tiny-random folder (seed 0, as `tiny-random`): building `tiny-random` itself parses the
# tokenizer out of the 93 MB GGUF, several seconds each time.
@pytest.fixture(scope="module")
def pruned(tiny_dir) -> str:
    return f"{tiny_dir}@layers=1"


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return load_tokenizer(tiny_dir)


@pytest.mark.parametrize("ref, want", [
    ("embedded:smollm2@layers=8", ("embedded:smollm2", 8)),
    ("tiny-random@layers=1", ("tiny-random", 1)),
    ("models/base@layers=12", ("models/base", 12)),
    ("facebook/opt-125m@layers=4", ("facebook/opt-125m", 4)),
    ("base@layers=8", ("base", 8)),
    ("embedded:smollm2", ("embedded:smollm2", None)),
    ("runs/a@b/model", ("runs/a@b/model", None)),  # an "@" inside a path is no suffix
])
def test_the_suffix_parses_without_loading_anything(ref, want):
    assert parse_layers(ref) == want


@pytest.mark.parametrize("ref, match", [
    ("tiny-random@layers=0", "keeps no decoder layer"),
    ("tiny-random@layers=x", "whole number"),
    ("tiny-random@layers=-1", "whole number"),
    ("tiny-random@layerz=3", "unknown suffix '@layerz=3'"),
    ("@layers=3", "no model before"),
    ("tiny-random@layers=2@layers=1", "one '@layers=<k>' suffix at most"),
])
def test_a_malformed_suffix_names_the_reference(ref, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_layers(ref)
    assert repr(ref) in str(e.value)
    with pytest.raises(ValueError, match=match):
        load_tokenizer(ref)  # the loaders parse the same way


def test_a_k_beyond_the_models_layers_names_the_reference(tiny_dir):
    ref = f"{tiny_dir}@layers=3"
    with pytest.raises(ValueError, match=re.escape(f"{ref!r}: @layers=3, but the model has 2 decoder layers; "
                                                   "k must be between 1 and 2")):
        load_model(ref)


def test_an_architecture_without_one_list_of_its_layers_is_refused(tiny_dir):
    model = load_model(tiny_dir)
    model.config.num_hidden_layers = 5  # no ModuleList of 5 layers exists: nothing to cut
    with pytest.raises(ValueError, match=r"'odd-model@layers=1': cannot depth-prune LlamaForCausalLM"):
        prune_layers(model, 1, "odd-model@layers=1")


@pytest.mark.parametrize("arch", ["opt", "gpt2", "qwen2"])
def test_other_architectures_prune_where_their_layers_are(arch, tmp_path):
    """OPT keeps its layers in model.decoder.layers, GPT-2 in transformer.h; Qwen2 has per-layer layer_types
    (sliding or full attention), which must shrink with the layers for the saved config to load again."""
    from transformers import AutoModelForCausalLM, GPT2Config, OPTConfig, Qwen2Config

    config = {"opt": lambda: OPTConfig(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=3,
                                       num_attention_heads=2, word_embed_proj_dim=16, bos_token_id=1,
                                       eos_token_id=2, pad_token_id=0),
              "gpt2": lambda: GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2, bos_token_id=1,
                                         eos_token_id=2),
              "qwen2": lambda: Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                           num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True,
                                           max_window_layers=1)}[arch]()
    torch.manual_seed(0)
    model = prune_layers(AutoModelForCausalLM.from_config(config), 2, f"{arch}@layers=2")
    assert model.config.num_hidden_layers == 2
    assert sum(isinstance(m, torch.nn.ModuleList) and len(m) == 2 for m in model.modules()) == 1
    model.save_pretrained(tmp_path, safe_serialization=True)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(_logits(again, ids), _logits(model, ids))


def test_pruned_tiny_has_one_layer_fewer_parameters_and_the_same_tokenizer(tiny_dir, tok):
    full, pruned = load_model(tiny_dir), load_model(PRUNED, seed=0)  # tiny_dir is tiny-random, seed 0
    assert pruned.config.num_hidden_layers == 1 and len(pruned.model.layers) == 1
    assert n_params(pruned) < n_params(full)
    # Exactly one decoder layer's worth of parameters is gone; embeddings, final norm and head stay.
    assert n_params(full) - n_params(pruned) == sum(p.numel() for p in full.model.layers[1].parameters())
    pruned_tok = load_tokenizer(PRUNED)
    assert pruned_tok.get_vocab() == tok.get_vocab() and pruned_tok.chat_template == tok.chat_template
    # Generation sizes its KV cache from the config: it must agree with the one layer that is left.
    out = pruned.generate(IDS, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, IDS.shape[1] + 4)


def test_pruning_is_exactly_the_first_k_layers_of_the_full_model(tiny_dir, pruned):
    """The pruned model's logits are the full model's head and final norm applied to its hidden state after
    layer k (read from the untouched full model), so nothing else was cut or changed."""
    full, cut = load_model(tiny_dir), load_model(pruned)
    with torch.no_grad():
        hidden = full.eval()(IDS, output_hidden_states=True).hidden_states[1]  # [0] embeddings, [1] after layer 1
        manual = full.lm_head(full.model.norm(hidden))
    torch.testing.assert_close(_logits(cut), manual, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(_logits(full), manual)  # the second layer mattered: the test is not empty


def test_the_pruned_model_saves_and_reloads_with_k_layers(pruned, tmp_path):
    model = load_model(pruned)
    save_model(model, load_tokenizer(pruned), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 1
    again = load_model(tmp_path / "out")
    assert len(again.model.layers) == 1 and n_params(again) == n_params(model)
    torch.testing.assert_close(_logits(again), _logits(model))


def test_pruned_teacher_dpo_trains_and_labels_against_its_untrained_self(pruned, tok, tmp_path):
    """train_weak then label_weak on a pruned reference: dpo.train, save, reload, implicit rewards with the
    pruned untrained model as the reference."""
    trained, summary = dpo.train(load_model(pruned), tok, TRIPLES, _dpo(), seed=0, live_dir=tmp_path / "live",
                                 work_dir=tmp_path / "work", model_id=pruned)
    assert summary["steps"] == 2 and summary["n_train_pairs_dropped_too_long"] == 0
    save_model(trained, tok, tmp_path / "weak", base=pruned)
    policy, ref = load_model(tmp_path / "weak"), load_model(pruned)
    assert policy.config.num_hidden_layers == ref.config.num_hidden_layers == 1
    r1, r2, n_truncated, n_tokens = implicit_rewards(policy, ref, load_tokenizer(tmp_path / "weak"), TRIPLES,
                                                     _dpo(beta=0.1, max_length=None), batch_size=2)
    assert n_truncated == 0 and n_tokens > 0 and len(r1) == len(r2) == len(TRIPLES)
    assert all(abs(x) < 1e3 for x in r1 + r2) and max(abs(x) for x in r1 + r2) > 1e-3  # trained: not the ref
    # The untrained pruned model against itself scores zero: the reference is the same model.
    z1, z2, *_ = implicit_rewards(load_model(pruned), ref, tok, TRIPLES, _dpo(max_length=None), batch_size=2)
    assert max(abs(x) for x in z1 + z2) < 1e-6


def test_a_lora_teacher_on_a_pruned_model_names_it_as_its_base_and_reloads(pruned, tok, tmp_path):
    lora = Lora(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    trained, _ = dpo.train(load_model(pruned), tok, TRIPLES, _dpo(), seed=0, live_dir=tmp_path / "live",
                           work_dir=tmp_path / "work", model_id=pruned, lora=lora)
    save_model(trained, tok, tmp_path / "weak", base=pruned)
    assert is_adapter(tmp_path / "weak")
    assert json.loads((tmp_path / "weak" / "adapter_config.json").read_text())["base_model_name_or_path"] == pruned
    merged = load_model(tmp_path / "weak")  # loads the pruned base, then merges the adapter in
    attached = attach_adapter(load_model(pruned), tmp_path / "weak")  # what label_weak does under LoRA
    assert merged.config.num_hidden_layers == 1
    torch.testing.assert_close(_logits(merged), _logits(attached), atol=1e-5, rtol=1e-5)


def test_sft_heals_a_pruned_model(pruned, tok, tmp_path):
    """The optional healing: the sft stage fine-tunes a pruned train_weak.model like any other starting point."""
    cfg = SFTFields(learning_rate=3e-3, max_steps=2, per_device_train_batch_size=2, warmup_steps=0, logging_steps=1,
                    bf16=False, max_length=64, save_strategy="no", activation_checkpointing=False)
    model, summary = sft.train(load_model(pruned), tok, [(p, c) for p, c, _ in TRIPLES], cfg, seed=0,
                               live_dir=tmp_path / "live", work_dir=tmp_path / "work", model_id=pruned)
    assert summary["steps"] == 2 and model.config.num_hidden_layers == 1


def test_a_reward_model_can_start_from_a_pruned_model(pruned):
    model, _ = reward_model_from_lm(pruned, seed=0)
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1 and model.config.num_labels == 1


@pytest.mark.parametrize("ref", ["embedded:smollm2@layers=8", "base@layers=8", "tiny-random@layers=1",
                                 "models/other@layers=3"])
def test_params_accept_a_pruned_weak_model(ref, shipped):
    assert shipped({"train_weak": {"model": ref}}).train_weak.model == ref


@pytest.mark.parametrize("ref", ["embedded:smollm2@layers=0", "embedded:smollm2@layers=x",
                                 "embedded:smollm2@layerz=3", "base@layers=", "@layers=8"])
def test_params_reject_a_malformed_suffix_naming_the_key(ref, shipped):
    with pytest.raises(ParamsError, match=r"train_weak\.model: ") as e:
        shipped({"train_weak": {"model": ref}})
    assert repr(ref) in str(e.value)


@pytest.mark.parametrize("sft_enabled, weak_start", [
    (False, "models/base@layers=8"),  # the saved base, cut when it loads
    (True, "models/sft/weak"),  # the sft stage fine-tunes the pruned base as the weak LLM's own starting point
])
def test_base_at_layers_is_the_base_models_output_pruned(sft_enabled, weak_start, shipped):
    params = shipped({"sft": {"enabled": sft_enabled}, "train_weak": {"model": "base@layers=8"}})
    assert params.train_weak.model_ref("models/base") == "models/base@layers=8"
    assert params.weak_start("models/base", "models/sft/target", "models/sft/weak") == weak_start
    assert parse_layers(params.train_weak.model_ref("models/base")) == ("models/base", 8)


def test_base_at_layers_loads_the_saved_base_pruned(tiny_dir, shipped):
    """What train_weak and label_weak load for `train_weak.model: base@layers=1` when the base is tiny-random."""
    ref = shipped({"train_weak": {"model": "base@layers=1"}}).train_weak.model_ref(str(tiny_dir))
    assert load_model(ref).config.num_hidden_layers == 1
    assert load_tokenizer(ref).get_vocab() == load_tokenizer(tiny_dir).get_vocab()
