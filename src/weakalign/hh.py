"""Anthropic HH-RLHF's dialogue form, read into the pipeline's pair schema with every unusable row counted.

Each row is ``{"chosen": DIALOGUE, "rejected": DIALOGUE}``; a dialogue is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``
turns, and the two share every turn but the last Assistant turn. The prompt is that shared part; the responses
are the two last Assistant turns; the human label is the dataset's own (`chosen`).

A row that is not a JSON object with two strings is a data error (file and line). A row that is well-formed but
cannot be used becomes a counted drop, by reason (:data:`DROP_REASONS`); a file with no usable row is an error.
This is the parsing layer of the HH data source (weakalign.sources); `read_hh` reads the local file form (``.jsonl`` or ``.jsonl.gz``).
"""

from __future__ import annotations

from pathlib import Path

from .schema import MAX_CHARS, Pair

ASSISTANT = "\n\nAssistant:"
DROP_REASONS = ("no_assistant_turn", "prompt_mismatch", "empty_prompt", "empty_response", "identical_responses",
                "too_long")


class Unusable(ValueError):
    """A well-formed row the pipeline cannot use; `reason` is one of DROP_REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(shared prompt, chosen response, rejected response) of one HH row, or raise Unusable."""
    i, j = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if i < 0 or j < 0:
        raise Unusable("no_assistant_turn")
    if chosen[:i] != rejected[:j]:
        raise Unusable("prompt_mismatch")  # the two dialogues must differ only in the last Assistant turn
    return usable(chosen[:i], chosen[i + len(ASSISTANT):], rejected[j + len(ASSISTANT):])


def usable(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    """The (prompt, chosen, rejected) texts stripped, or Unusable with the reason: the checks every source shares."""
    prompt, a, b = prompt.strip(), a.strip(), b.strip()
    if not prompt:
        raise Unusable("empty_prompt")
    if not a or not b:
        raise Unusable("empty_response")
    if a == b:
        raise Unusable("identical_responses")
    if max(len(prompt), len(a), len(b)) > MAX_CHARS:
        raise Unusable("too_long")
    return prompt, a, b


def read_hh(path: str | Path, seed: int = 0) -> tuple[list[Pair], dict[str, int]]:
    """Pairs of an HH file and the count of dropped rows per reason (every reason present, zeros included).

    The `jsonl` data source in HH format (weakalign.sources, which holds the reading, the seeded coin that puts
    the chosen response first or second, and the ids), kept as the short name for this one format.
    """
    from .params import Data
    from .sources import load_pairs  # sources builds on this module's dialogue parsing

    return load_pairs(Data(source="jsonl", path=str(path), format="hh"), seed)
