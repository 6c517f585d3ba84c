"""Model references as text: what `base.model`, `train_weak.model` and `judge.model` can hold, checked without
loading torch or transformers (so params fail in under a second). Loading them is weakalign.modeling.models'.

- ``embedded:smollm2`` (EMBEDDED), ``tiny-random`` (TINY), a local directory under ``local_models/``
  (LOCAL_MODELS), a Hugging Face Hub id (``owner/name``), any of them with the suffix ``@layers=<k>`` (the
  depth-pruned model: weakalign.modeling.models).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

EMBEDDED = "embedded:smollm2"
TINY = "tiny-random"
_LAYERS = re.compile(r"layers=(\d+)")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# Every stage that loads a model named in params depends on this folder in dvc.yaml (scripts/stage_deps.py), so
# DVC hashes the weights of a local model and re-runs what they feed when they change. A directory elsewhere would
# be invisible to DVC: a changed model would be served the old results from the cache.
LOCAL_MODELS = "local_models"


def parse_layers(ref: str | Path) -> tuple[str, int | None]:
    """Split ``<ref>@layers=<k>`` into (ref, k); a reference without the suffix gives (ref, None).

    Pure string work (no model is loaded), so params can check the syntax. A malformed suffix (``@layers=0``,
    ``@layers=x``, ``@layerz=3``, nothing before the ``@``, two suffixes) is a ValueError that names the reference.
    That k does not exceed the model's layer count can only be checked once it is loaded (:func:`prune_layers`).
    """
    ref = str(ref)
    base, at, tail = ref.rpartition("@")
    if not at or "/" in tail:  # no "@", or one inside a path (runs/a@b/model): not a suffix
        return ref, None
    m = _LAYERS.fullmatch(tail)
    if m is None and tail.startswith("layers="):
        raise ValueError(f"model reference {ref!r}: '@{tail}': k must be a whole number of decoder layers to keep")
    if m is None:
        raise ValueError(f"model reference {ref!r}: unknown suffix '@{tail}' (the only one is '@layers=<k>', "
                         "k a whole number of decoder layers to keep)")
    k = int(m.group(1))
    if k < 1:
        raise ValueError(f"model reference {ref!r}: @layers={k} keeps no decoder layer; k must be at least 1")
    if not base:
        raise ValueError(f"model reference {ref!r}: no model before '@layers={k}'")
    if parse_layers(base)[1] is not None:
        raise ValueError(f"model reference {ref!r}: one '@layers=<k>' suffix at most")
    return base, k


def check_offline_cache(ref: str) -> None:
    """Offline (HF_HUB_OFFLINE), a Hub id must already be in the local cache: say so now, not after transformers
    has spent a minute trying. A ValueError naming the id; nothing for other references or when online."""
    base = parse_layers(ref)[0]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline and HUB_ID.fullmatch(base) and not Path(base).exists():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(base, "config.json"), str):
            raise ValueError(f"{base!r} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: it "
                             "cannot be downloaded here (download it where there is a network, or point to a local "
                             "directory)")


def check_local_dir(ref: str) -> None:
    """A reference that is a local directory must lie under LOCAL_MODELS (resolved: a link to a folder outside does
    not count, as DVC does not follow it when it hashes the folder). A ValueError saying where to put it; nothing
    for other references."""
    base = Path(parse_layers(ref)[0])
    if not base.is_dir():
        return
    home = Path(LOCAL_MODELS).resolve()
    if not base.resolve().is_relative_to(home):
        raise ValueError(f"local model directory {str(base)!r} lies outside {LOCAL_MODELS}/, so DVC would not see "
                         f"its weights change and would serve results made from the old ones: move or copy it "
                         f"into {LOCAL_MODELS}/ (a link to a folder is not followed) and name it "
                         f"{LOCAL_MODELS}/<name>")
