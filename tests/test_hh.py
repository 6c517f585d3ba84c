"""The HH-RLHF dialogue reader: prompt/response splitting, counted drops, and the real file in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weakalign.data.hh import split_dialogue
from weakalign.data.sources import read_hh
from weakalign.records.schema import DROP_REASONS, Unusable

# Real data beside the repository (../shared/data, see its README); never copied into it.
HH_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test-part1.jsonl.gz"


def _dialogue(*turns: str) -> str:
    return "".join(f"\n\n{t}" for t in turns)


def test_split_keeps_the_shared_turns_as_prompt():
    chosen = _dialogue("Human: Hi", "Assistant: Hello!", "Human: A joke?", "Assistant: Why did the chicken...")
    rejected = _dialogue("Human: Hi", "Assistant: Hello!", "Human: A joke?", "Assistant: No.")
    prompt, a, b = split_dialogue(chosen, rejected)
    assert prompt == "Human: Hi\n\nAssistant: Hello!\n\nHuman: A joke?"
    assert (a, b) == ("Why did the chicken...", "No.")


@pytest.mark.parametrize("chosen, rejected, reason", [
    (_dialogue("Human: Hi"), _dialogue("Human: Hi"), "no_assistant_turn"),
    (_dialogue("Human: Hi", "Assistant: A"), _dialogue("Human: Hey", "Assistant: B"), "prompt_mismatch"),
    (_dialogue("Assistant: A"), _dialogue("Assistant: B"), "empty_prompt"),
    (_dialogue("Human: Hi", "Assistant: "), _dialogue("Human: Hi", "Assistant: B"), "empty_response"),
    (_dialogue("Human: Hi", "Assistant: Same"), _dialogue("Human: Hi", "Assistant: Same "), "identical_responses"),
    (_dialogue("Human: Hi", "Assistant: " + "x" * 20_001), _dialogue("Human: Hi", "Assistant: B"), "too_long"),
])
def test_unusable_rows_say_why(chosen, rejected, reason):
    with pytest.raises(Unusable) as e:
        split_dialogue(chosen, rejected)
    assert e.value.reason == reason and reason in DROP_REASONS


def test_positions_are_seeded_coins_and_the_label_follows(tmp_path):
    p = tmp_path / "hh.jsonl"
    rows = [{"chosen": _dialogue(f"Human: Q{i}", f"Assistant: good {i}"),
             "rejected": _dialogue(f"Human: Q{i}", f"Assistant: bad {i}")} for i in range(40)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, dropped = read_hh(p, seed=0)
    assert len(pairs) == 40 and not any(dropped.values())
    for pair in pairs:
        chosen = pair.response_1 if pair.human == 1 else pair.response_2
        assert chosen.startswith("good")
    assert 10 < sum(pair.human == 1 for pair in pairs) < 30
    assert [x.human for x in read_hh(p, seed=0)[0]] == [x.human for x in pairs]


def test_a_row_that_is_not_hh_is_an_error_with_its_line(tmp_path):
    from weakalign.records.io import DataError

    p = tmp_path / "hh.jsonl"
    p.write_text(json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})
                 + "\n" + json.dumps({"chosen": "x"}) + "\n")
    with pytest.raises(DataError, match=r"hh\.jsonl:2: field 'rejected' must be a string"):
        read_hh(p)


@pytest.mark.skipif(not HH_FILE.is_file(), reason=f"real HH-RLHF sample not found at {HH_FILE}")
def test_every_row_of_the_shared_hh_file_is_accounted_for():
    pairs, dropped = read_hh(HH_FILE)
    assert len(pairs) + sum(dropped.values()) == 1200
    assert len(pairs) == 1196 and dropped["empty_response"] == 4  # measured: four rows end in an empty turn
    assert len({p.id for p in pairs}) == len(pairs)


def test_last_turns_are_parsed_by_the_shared_start_or_dropped_with_a_reason():
    p = "\n\nHuman: How do I say hi?"
    assert split_dialogue(p + "\n\nAssistant: Say hi.", p + "\n\nAssistant: Wave.") == (p.strip(), "Say hi.", "Wave.")
    # rfind on each side took the quoted marker as the turn's start and moved "Say hi." into the prompt: now dropped.
    with pytest.raises(Unusable) as e:
        split_dialogue(p + "\n\nAssistant: Say hi.\n\nAssistant: is a label", p + "\n\nAssistant: Wave.")
    assert e.value.reason == "nested_assistant_turn"
    with pytest.raises(Unusable) as e:  # both final turns open the same way, then quote the marker
        split_dialogue(p + "\n\nAssistant: Sure.\n\nAssistant: x", p + "\n\nAssistant: Sure.\n\nAssistant: y")
    assert e.value.reason == "nested_assistant_turn"
    with pytest.raises(Unusable) as e:  # the dialogue ends with the human: no final Assistant turn to compare
        split_dialogue(p + "\n\nAssistant: Hi.\n\nHuman: thanks", p + "\n\nAssistant: Yo.\n\nHuman: thanks")
    assert e.value.reason == "ends_with_human_turn"
    with pytest.raises(Unusable) as e:
        split_dialogue(p + "\n\nAssistant: \u200b", p + "\n\nAssistant: Wave.")
    assert e.value.reason == "empty_response"
