"""A model as this pipeline saves it: its weights (or, for a LoRA model, only the adapter, naming its base), its
tokenizer, and a model card (README.md) that names where it comes from, the stage that wrote it, its training params
and the sha256 of its data. weakalign.modeling.models loads what this writes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a model is saved: `origin` and `model_card` serve the torch-free report stage
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from weakalign.config.refs import EMBEDDED, TINY, parse_layers

# What the embedded reference is, for model cards (a hub id a reader can look up).
ORIGINS = {EMBEDDED: "HuggingFaceTB/SmolLM2-135M-Instruct", TINY: "weakalign tiny-random (a 2-layer Llama, random)"}


def origin(ref: str | Path) -> str:
    """The model a reference ultimately comes from: the hub id of the embedded model, a hub id as it is, or, for a
    local directory this pipeline wrote, the `base_model` its own card names (models/base -> SmolLM2 ...)."""
    ref, layers = parse_layers(ref)
    suffix = f" (first {layers} layers)" if layers else ""
    card = Path(ref) / "README.md"
    if ref in ORIGINS:
        return ORIGINS[ref] + suffix
    if card.is_file():
        m = re.search(r"^base_model: (.+)$", card.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1).strip() + suffix
    return ref + suffix


def model_card(stage: str, start: str, training: dict | None = None, data: dict[str, str] | None = None,
               adapter: bool = False) -> str:
    """README.md of a saved model: the model it comes from (front matter, as the Hub reads it), the stage that
    wrote it, its starting point, the training params and the sha256 of the data it trained on."""
    import hashlib

    import yaml

    front = {"base_model": origin(start), "library_name": "peft" if adapter else "transformers",
             "tags": ["weakalign"] + (["dpo", "trl"] if training is not None else [])}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# weakalign `{stage}`", "",
             f"Written by the weakalign pipeline stage `{stage}`, starting from `{start}` ({origin(start)}).", ""]
    if adapter:
        lines += ["A LoRA adapter: load it with its base (weakalign.modeling.models.load_model merges it).", ""]
    if data:
        lines += ["Data (sha256):", ""] + [f"- `{p}`: {hashlib.sha256(Path(p).read_bytes()).hexdigest()}"
                                            for p in sorted(data.values())] + [""]
    if training is not None:
        lines += ["Training params (the TRL config keys params.yaml sets; TRL's defaults for the rest):", "",
                  "```yaml", yaml.safe_dump(training, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | Path,
               base: str | None = None, card: str | None = None) -> None:
    """Weights (or, for a PEFT model, only the adapter, recording `base` as its base model) and tokenizer, and
    `card` (model_card) as README.md, instead of the placeholder PEFT writes."""
    import torch
    from accelerate.utils import is_peft_model

    out = Path(out)
    bad = next((n for n, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:  # a diverged run (a learning rate too high) must not leave a model that looks fine
        raise ValueError(f"the model to save has non-finite weights (NaN or infinity, first in {bad}): training "
                         "diverged; lower the learning rate")
    if is_peft_model(model):
        if base is None:
            raise ValueError("saving a LoRA adapter needs the reference of its base model")
        for cfg in model.peft_config.values():
            cfg.base_model_name_or_path = str(base)  # a path or model reference that load_model resolves
            # PEFT keeps target_modules (and other module lists) as sets, which adapter_config.json would list in
            # string-hash order: PYTHONHASHSEED would make identical runs write different bytes. Sorted, once saved.
            for field, value in vars(cfg).items():
                if isinstance(value, (set, frozenset)):
                    setattr(cfg, field, sorted(value))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if card is not None:
        (out / "README.md").write_text(card, encoding="utf-8")
