"""The sandbox gold judges (vader, tone): sentiment, and the penalties that make them hard to game."""

from functools import partial

from conftest import shipped_section
from weakalign.labelers.judge import ToneJudge, VaderJudge, make_judge

_judge = partial(shipped_section, "judge")
JUDGE = _judge()  # the shipped judge

PROMPT = 'Continue this review in one or two sentences: "I went in with high hopes for the film, and"'


def test_positive_beats_negative():
    j = VaderJudge(JUDGE)
    good = j.score_one(PROMPT, "It was a wonderful, moving story and I loved every minute of it.")
    bad = j.score_one(PROMPT, "It was a boring, awful mess and I hated every minute of it.")
    assert good > 0.5 > -0.5 > bad


def test_repetition_is_penalised():
    j = VaderJudge(JUDGE)
    honest = j.score_one(PROMPT, "The cast is great and the ending is lovely.")
    gamed = j.score_one(PROMPT, "great great great great great great great great great great")
    assert gamed < honest


def test_copying_the_prompt_is_penalised():
    j = VaderJudge(JUDGE)
    copied = j.score_one(PROMPT, "I went in with high hopes for the film, and I went in with high hopes")
    assert copied < j.score_one(PROMPT, "The film rewarded every hope I had, a joyful surprise.")


def test_short_and_empty_responses_get_the_floor():
    j = VaderJudge(_judge(short_score=-1.0, min_words=4))
    assert j.score_one(PROMPT, "") == -1.0
    assert j.score_one(PROMPT, "Great!") == -1.0


def test_batch_interface_matches_single():
    j = make_judge(JUDGE)
    responses = ["Lovely.", "It is a charming, clever film with a big heart.", "Dull and far too long, sadly."]
    assert j.score([PROMPT] * 3, responses) == [j.score_one(PROMPT, r) for r in responses]


# --- reward-model gold judge --------------------------------------------------------------------------------------

import pytest  # noqa: E402
import torch  # noqa: E402

from weakalign.labelers.judge import RewardModelJudge  # noqa: E402

PAIRS = [("Hi", "Hello! How can I help you today?"),
         ("Tell me a long story about a cat who learns to sail across the sea.", "No."),
         ("What is the capital of France?", "Paris is the capital of France, and its largest city."),
         ("Say bye", "Bye.<|im_end|>")]  # ends in the EOS token: a pad=EOS scorer would score the token before it


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    """A tiny random Llama reward model (one output) with the SmolLM2 tokenizer, whose pad token is its EOS."""
    from transformers import LlamaForSequenceClassification

    from weakalign.modeling.models import TINY, _tiny_config, load_tokenizer

    tok = load_tokenizer(TINY)
    assert tok.pad_token_id == tok.eos_token_id  # the case the loader must fix
    torch.manual_seed(0)
    config = _tiny_config(len(tok), tok.eos_token_id, tok.bos_token_id)
    config.num_labels = 1
    out = tmp_path_factory.mktemp("rm") / "model"
    LlamaForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out)


def _unpadded(judge: RewardModelJudge, prompt: str, response: str) -> float:
    """The score head applied to the text's very last token, alone in its batch (no pooling rule involved)."""
    ids = torch.tensor([judge._encode(prompt, response)])
    with torch.no_grad():
        last = judge.model.model(input_ids=ids).last_hidden_state[:, -1]
        return judge.model.score(last)[0, 0].item()


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "text-pair"])
def test_reward_model_scores_the_last_real_token_whatever_the_batch(rm_dir, chat):
    """Right padding with a dedicated pad token: each score is the score head on the text's last token, as when it
    is scored alone and unpadded, also for a text that ends in the EOS token, and does not change with the batch
    size (texts of different lengths padded together)."""
    judge = RewardModelJudge.from_params(_judge(name="reward_model", model=rm_dir, batch_size=1))
    if not chat:
        judge.tok.chat_template = None  # the text-pair form of reward models without a chat template
    assert judge.tok.pad_token_id != judge.tok.eos_token_id and judge.tok.padding_side == "right"
    prompts, responses = zip(*PAIRS)
    one = judge.score(list(prompts), list(responses))
    judge.batch_size = 3
    three = judge.score(list(prompts), list(responses))
    assert one == pytest.approx(three, abs=1e-5)
    assert one == pytest.approx([_unpadded(judge, p, r) for p, r in PAIRS], abs=1e-5)
    assert len(set(one)) == len(PAIRS)  # a test of nothing if the random model gave one score for everything


def test_reward_model_judge_through_make_judge_and_its_params(rm_dir):
    judge = make_judge(_judge(name="reward_model", model=rm_dir))
    assert judge.name == f"reward_model:{rm_dir}"
    with pytest.raises(ValueError, match="needs the reward model"):
        _judge(name="reward_model")
    with pytest.raises(ValueError, match="only judge.name 'reward_model' takes a model"):
        _judge(name="vader", model=rm_dir)


# --- tone gold judge: "better" depends on the prompt ---------------------------------------------------------------

from weakalign.data.sandbox import make_tone_prompts, requested_tone  # noqa: E402

OPENING = "Frankly, the robot vacuum was a letdown:"
ASK_POS = f'Continue this review in one or two sentences, in a positive tone: "{OPENING}"'
ASK_NEG = f'Continue this review in one or two sentences, in a negative tone: "{OPENING}"'
POS = "To be fair, it is quiet and easy to set up, and it does a decent job."
NEG = "The suction is weak, the battery dies after twenty minutes and the app keeps crashing."


def _mean(xs):
    return sum(xs) / len(xs)


def test_tone_judge_rewards_the_requested_tone_in_both_directions():
    j = make_judge(_judge(name="tone"))
    assert isinstance(j, ToneJudge) and j.name == "tone"
    assert j.score_one(ASK_POS, POS) > 0.3 > -0.3 > j.score_one(ASK_POS, NEG)
    assert j.score_one(ASK_NEG, NEG) > 0.3 > -0.3 > j.score_one(ASK_NEG, POS)


def test_a_prompt_independent_shift_in_tone_does_not_raise_the_tone_score():
    """On a balanced set, what raises VADER's mean (more positive words everywhere) does not raise the tone judge's:
    only following each prompt's request does."""
    tone, vader = ToneJudge(JUDGE), VaderJudge(JUDGE)
    prompts = [r["prompt"] for r in make_tone_prompts(60, seed=0)]
    for same in (POS, NEG, "hope you have a wonderful and amazing day"):  # one response to every prompt: net 0
        assert abs(_mean(tone.score(prompts, [same] * len(prompts)))) < 1e-9
    matching = [POS if requested_tone(p) == "positive" else NEG for p in prompts]
    assert _mean(tone.score(prompts, matching)) > 0.25
    brighter = [r + " Wonderful, I loved it!" for r in matching]
    assert _mean(tone.score(prompts, brighter)) < _mean(tone.score(prompts, matching))
    assert _mean(vader.score(prompts, brighter)) > _mean(vader.score(prompts, matching)) + 0.25  # the old failure


def test_tone_judge_keeps_vaders_penalties():
    tone, vader = ToneJudge(JUDGE), VaderJudge(JUDGE)
    compound = vader._vader.polarity_scores
    gamed = {"repeat": ("great great great great great great great great", POS),
             "copy": (f"{OPENING} the robot vacuum was a letdown", NEG)}
    for prompt, sign in ((ASK_POS, 1), (ASK_NEG, -1)):
        for name, (bad, honest) in gamed.items():
            # The same penalty as VaderJudge takes on the same prompt; only the sentiment's sign changes.
            penalty = compound(bad)["compound"] - vader.score_one(prompt, bad)
            assert penalty > 0.3, name
            assert tone.score_one(prompt, bad) == pytest.approx(sign * compound(bad)["compound"] - penalty, abs=1e-5)
        assert tone.score_one(prompt, "") == tone.score_one(prompt, "Great!") == JUDGE.short_score
    assert tone.score_one(ASK_NEG, gamed["copy"][0]) < tone.score_one(ASK_NEG, NEG)
    assert tone.score_one(ASK_POS, gamed["repeat"][0]) < tone.score_one(ASK_POS, POS)


def test_tone_judge_refuses_a_prompt_without_a_request():
    with pytest.raises(ValueError, match="Continue this review in one or two sentences"):
        ToneJudge(JUDGE).score_one(PROMPT, POS)  # a vader-task prompt: no requested tone
    with pytest.raises(ValueError, match="requested tone"):
        ToneJudge(JUDGE).score([PROMPT], [""])  # even where the response alone would get short_score
