"""Anthropic HH-RLHF's dialogue form, read into the pipeline's pair schema with every unusable row counted.

Each row is ``{"chosen": DIALOGUE, "rejected": DIALOGUE}``; a dialogue is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``
turns, and the two share every turn but the last Assistant turn. The prompt is that shared part; the responses
are the two last Assistant turns; the human label is the dataset's own (`chosen`).

A row that is not a JSON object with two strings is a data error (file and line). A row that is well-formed but
cannot be used becomes a counted drop, by reason (:data:`DROP_REASONS`); a file with no usable row is an error.
This is the parsing layer of the HH data source (weakalign.sources); `read_hh` reads the local file form (``.jsonl`` or ``.jsonl.gz``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .schema import MAX_CHARS, Pair, visible

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
DROP_REASONS = ("no_assistant_turn", "prompt_mismatch", "ends_with_human_turn", "nested_assistant_turn",
                "empty_prompt", "empty_response", "identical_responses", "too_long")


class Unusable(ValueError):
    """A well-formed row the pipeline cannot use; `reason` is one of DROP_REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(shared prompt, chosen response, rejected response) of one HH row, or raise Unusable.

    The prompt is the two dialogues' common start up to its last Assistant marker, so an "Assistant:" quoted
    inside a final turn cannot move assistant text into the prompt. After that marker each side must be one
    Assistant turn: a Human turn after it (the dialogue ends with the human, or goes on) or a second Assistant
    marker is dropped with its reason, never guessed at."""
    if ASSISTANT not in chosen or ASSISTANT not in rejected:
        raise Unusable("no_assistant_turn")
    common = os.path.commonprefix([chosen, rejected])
    i = common.rfind(ASSISTANT)
    if i < 0:
        raise Unusable("prompt_mismatch")  # the two dialogues must differ only in the last Assistant turn
    a, b = chosen[i + len(ASSISTANT):], rejected[i + len(ASSISTANT):]
    prompt = chosen[:i]
    if prompt.rfind(ASSISTANT) > prompt.rfind(HUMAN):  # the marker split an Assistant turn that both sides share
        raise Unusable("nested_assistant_turn")
    if HUMAN in a or HUMAN in b:
        raise Unusable("ends_with_human_turn")
    if ASSISTANT in a or ASSISTANT in b:
        raise Unusable("nested_assistant_turn")
    return usable(chosen[:i], a, b)


def usable(prompt: str, a: str, b: str) -> tuple[str, str, str]:
    """The (prompt, chosen, rejected) texts stripped, or Unusable with the reason: the checks every source shares."""
    prompt, a, b = prompt.strip(), a.strip(), b.strip()
    if not visible(prompt):  # as the schema sees text: zero-width characters alone are empty
        raise Unusable("empty_prompt")
    if not visible(a) or not visible(b):
        raise Unusable("empty_response")
    if visible(a) == visible(b):
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
