"""One loader for every model reference: embedded GGUF, tiny-random, a local directory, a Hub id (offline cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from weakalign.modeling.models import (EMBEDDED, TINY, embedded_gguf, load_model, load_tokenizer, n_params,
                                       prune_layers, tflop)


def test_tiny_model_is_small_and_uses_the_smollm2_tokenizer(tiny_dir):
    model = load_model(str(tiny_dir))
    tok = load_tokenizer(str(tiny_dir))
    n = n_params(model)
    assert n == sum(p.numel() for p in model.parameters()) and 1e6 < n < 3e6
    assert len(tok) == 49152 and tok.chat_template
    size = sum(f.stat().st_size for f in tiny_dir.iterdir())
    assert size < 15e6
    assert any(f.suffix == ".safetensors" for f in tiny_dir.iterdir())


def test_work_estimate_is_2n_flops_per_token_forward_and_6n_training():
    # The TFLOP columns of every labeling and training metric come from here.
    assert tflop(10**6, 5 * 10**5) == pytest.approx(1.0)
    assert tflop(10**6, 5 * 10**5, train=True) == pytest.approx(3.0)


def test_the_gguf_tokenizer_is_built_once_per_process_and_each_caller_gets_its_own(monkeypatch, tmp_path):
    """Building it parses the whole GGUF (3-4 s): tiny-random's tokenizer and model ask for it twice in one stage."""
    from transformers import AutoTokenizer

    from weakalign.modeling import models

    built = []
    real = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: built.append(a) or real(*a, **k))
    models._gguf_tokenizer.cache_clear()
    a = load_tokenizer(TINY)
    model = load_model(TINY, seed=0)
    b = load_tokenizer(EMBEDDED)
    assert len(built) == 1 and model.config.vocab_size == len(a) == len(b) == 49152
    a.chat_template, a.pad_token = "changed", "<|im_start|>"
    assert b.chat_template != "changed" and b.pad_token == b.eos_token  # a copy, not the cached object
    a.save_pretrained(tmp_path / "a")
    load_tokenizer(TINY).save_pretrained(tmp_path / "c")
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "c/tokenizer.json").read_bytes()


def test_tiny_is_seeded():
    a, b, c = load_model(TINY, seed=0), load_model(TINY, seed=0), load_model(TINY, seed=1)
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_missing_local_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_tokenizer("./models/missing")


def test_hub_id_loads_from_the_local_hub_cache(tiny_dir, tmp_path):
    """The Hub code path (`org/name`), exercised offline on a local copy laid out as the HF cache."""
    snapshot = tmp_path / "hub" / "models--weakalign-test--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_dir, snapshot)
    refs = tmp_path / "hub" / "models--weakalign-test--tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    code = textwrap.dedent("""
        from weakalign.modeling.models import load_model, load_tokenizer
        m = load_model("weakalign-test/tiny"); t = load_tokenizer("weakalign-test/tiny")
        print(sum(p.numel() for p in m.parameters()), len(t))
    """)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == [str(sum(p.numel() for p in load_model(str(tiny_dir)).parameters())), "49152"]


def test_trust_remote_code_warns(tiny_dir, caplog):
    load_model(str(tiny_dir), trust_remote_code=True)
    assert "trust_remote_code is on" in caplog.text


def test_embedded_smollm2_loads_offline_and_answers_sensibly():
    folder, name = embedded_gguf()
    assert name.endswith(".gguf")
    tok, model = load_tokenizer(EMBEDDED), load_model(EMBEDDED)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])
    # The dequantised model saves like any other (a GGUF-loaded model refuses to).
    assert getattr(model.config, "quantization_config", None) is None
    # The depth-pruned teacher `embedded:smollm2@layers=8` is this model cut after layer 8 (load_model loads, then
    # calls prune_layers; tests/test_pruned.py checks that on tiny-random). Cut here rather than loaded a second
    # time, which would add about 20 s: 8 of 30 layers, 56.6 M of 134.5 M parameters (models.py docstring).
    pruned = prune_layers(model, 8, f"{EMBEDDED}@layers=8")
    assert pruned.config.num_hidden_layers == 8 and len(pruned.model.layers) == 8
    assert n_params(pruned) == 56_632_896


def test_pickled_weights_are_refused(tiny_dir, tmp_path):
    """A model folder with only pickle weights (which can run code when loaded) is refused with a clear reason."""
    import shutil

    import torch

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir, folder)
    torch.save(load_model(tiny_dir).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no \.safetensors weights \(only \['pytorch_model\.bin'\]\); "
                       "weakalign does not load pickled weights"):
        load_model(folder)


def test_a_tokenizer_without_chat_template_gets_the_plain_hh_format(tiny_dir, tmp_path, caplog):
    """Base models such as OPT ship no chat template: prompts become HH-RLHF's plain-text dialogue, the prompt is a
    prefix of prompt + response (TRL splits them there), the template is saved with the model, and DPO runs."""
    from weakalign.config.params import DPO
    from weakalign.modeling.models import PLAIN_TEMPLATE
    from weakalign.modeling.saved_models import save_model
    from weakalign.training import dpo

    plain = tmp_path / "plain"
    shutil.copytree(tiny_dir, plain)
    (plain / "chat_template.jinja").unlink()  # as a base model's tokenizer comes
    tok = load_tokenizer(plain)
    assert tok.chat_template == PLAIN_TEMPLATE and "no chat template" in caplog.text
    user = [{"role": "user", "content": "Is tea good?"}]
    prompt = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": "Yes."}], tokenize=False)
    assert prompt == (tok.bos_token or "") + "\n\nHuman: Is tea good?\n\nAssistant:"
    assert full == prompt + " Yes." + tok.eos_token
    model, summary = dpo.train(load_model(plain), tok, [("Is tea good?", "Yes, very.", "No.")] * 4,
                               DPO(max_steps=2, per_device_train_batch_size=2, bf16=False, save_strategy="no",
                                   activation_checkpointing=False), seed=0, live_dir=tmp_path / "live",
                               work_dir=tmp_path / "work", model_id="plain")
    assert summary["steps"] == 2 and summary["n_train_pairs_dropped_too_long"] == 0
    save_model(model, tok, tmp_path / "out")
    caplog.clear()
    assert load_tokenizer(tmp_path / "out").chat_template == PLAIN_TEMPLATE and "no chat template" not in caplog.text


def test_bf16_is_used_only_where_the_hardware_has_it(monkeypatch, caplog):
    # Emulated bf16 ran 6.6x slower than fp32 when sampling on an AVX2-only CPU, so `bf16: true` means "where native".
    from weakalign.modeling import models

    monkeypatch.setattr(models, "native_bf16", lambda: False)
    monkeypatch.setattr(models, "_said_bf16", set())
    with caplog.at_level("INFO", logger=models.log.name):
        assert models.bf16_usable(True) is False
        assert models.bf16_usable(True) is False
    assert sum("no native bf16" in r.getMessage() for r in caplog.records) == 1  # said once per process
    assert models.bf16_usable(False) is False
    for native in (True, None):  # None: the CPU could not be asked, so bf16 is taken to work
        monkeypatch.setattr(models, "native_bf16", lambda native=native: native)
        assert models.bf16_usable(True) is True and models.bf16_usable(False) is False


def test_a_diverged_model_is_never_saved(tmp_path):
    from weakalign.modeling.models import TINY, load_model, load_tokenizer
    from weakalign.modeling.saved_models import save_model
    from weakalign.records.io import atomic_dir

    model, tok = load_model(TINY), load_tokenizer(TINY)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite weights"), atomic_dir(tmp_path / "m") as d:
        save_model(model, tok, d)
    assert list(tmp_path.iterdir()) == []


def test_an_adapter_config_is_the_same_bytes_whatever_the_string_hash_seed(tiny_dir, tmp_path):
    """PEFT holds target_modules as a set; saved as it is, adapter_config.json lists them in hash order, so two
    identical runs under different PYTHONHASHSEED wrote different files (and different DVC hashes)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from peft import LoraConfig, get_peft_model\n"
        "from weakalign.modeling.models import load_model, load_tokenizer\n"
        "from weakalign.modeling.saved_models import save_model\n"
        f"model = load_model({str(tiny_dir)!r})\n"
        "names = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']\n"
        "peft = get_peft_model(model, LoraConfig(r=2, target_modules=names))\n"
        f"save_model(peft, load_tokenizer({str(tiny_dir)!r}), sys.argv[1], base='tiny')\n")
    configs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"adapter{seed}"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        configs.append((out / "adapter_config.json").read_bytes())
    assert configs[0] == configs[1] == configs[2]
    assert b'"down_proj",\n    "gate_proj"' in configs[0]  # sorted


def test_damaged_model_files_fail_in_one_line_naming_the_model(tiny_dir, tmp_path):
    """A truncated safetensors file, a config.json that is not JSON, an adapter whose base is itself: a ValueError
    (exit 2 in a stage) that names the model and what to do, not a traceback from inside transformers."""
    cut = tmp_path / "cut"
    shutil.copytree(tiny_dir, cut)
    weights = next(cut.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"model '{cut}': cannot load it \(.*\); its files are damaged or incomplete"):
        load_model(cut)
    bad = tmp_path / "badconfig"
    shutil.copytree(tiny_dir, bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=rf"model '{bad}': cannot load it"):
        load_model(bad)
    selfish = tmp_path / "adapter"
    selfish.mkdir()
    (selfish / "adapter_config.json").write_text(f'{{"base_model_name_or_path": "{selfish}", "peft_type": "LORA"}}')
    (selfish / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="its base model .* leads back to itself"):
        load_model(selfish)
