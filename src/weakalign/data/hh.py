"""Anthropic HH-RLHF's dialogue form, read into the pipeline's pair schema with every unusable row counted.

Each row is ``{"chosen": DIALOGUE, "rejected": DIALOGUE}``; a dialogue is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``
turns, and the two share every turn but the last Assistant turn. The prompt is that shared part; the responses
are the two last Assistant turns; the human label is the dataset's own (`chosen`).

A row that is not a JSON object with two strings is a data error (file and line). A row that is well-formed but
cannot be used becomes a counted drop, by reason (:data:`weakalign.records.schema.DROP_REASONS`); a file with no usable
row is an error. This is the parsing layer of the HH data source (weakalign.data.sources, whose `read_hh` reads the
local file form, ``.jsonl`` or ``.jsonl.gz``).
"""

from __future__ import annotations

import os

from weakalign.records.schema import Unusable, usable

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"


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
    return usable(prompt, a, b)
