"""Alignment metrics: gold reward of each model's responses on the test prompts, and paired win rates."""

from __future__ import annotations

from weakalign.analysis.stats import mean_sem, r, win_rate, win_rate_ci

# Two responses are "length-matched" when their word counts differ by at most this share of the longer one.
LENGTH_MATCH = 0.2


def alignment_metrics(scores: dict[str, list[float] | None], words: dict[str, list[int]]) -> dict:
    """metrics/alignment.json from per-prompt gold scores of `base` and each aligned source (same prompt order).

    For each aligned source: its mean gold reward and standard error, its win rate against the base on the same
    prompts, and the paired gain over the base with the standard error of the per-prompt differences. Without a
    gold judge (scores None) every gold figure is null and the keys stay the same.
    """
    if any(s is None for s in scores.values()):
        gold_keys = ("gold_reward_mean", "gold_reward_sem")
        vs_base = ("win_rate_vs_base", "win_rate_vs_base_lo", "win_rate_vs_base_hi", "gain_vs_base",
                   "gain_vs_base_sem", "gain_z", "win_rate_vs_base_length_matched", "n_length_matched")
        out = {name: dict.fromkeys(gold_keys) | {"n_prompts": len(words[name]),
                                                  "mean_words": r(sum(words[name]) / len(words[name]), 2)}
               | (dict.fromkeys(vs_base) if name != "base" else {}) for name in scores}
        pairs = [n for n in scores if n != "base"]
        h2h = {f"{a}_vs_{b}": {"win_rate": None, "lo": None, "hi": None, "n_prompts": len(words[a])}
               for i, a in enumerate(pairs) for b in pairs[i + 1:]}
        return out | {"weak_vs_human_win_rate": None, "head_to_head": h2h}
    base = scores["base"]
    out: dict = {}
    for name, s in scores.items():
        m, se = mean_sem(s)
        entry = {"gold_reward_mean": r(m), "gold_reward_sem": r(se), "n_prompts": len(s),
                 "mean_words": r(sum(words[name]) / len(words[name]), 2)}
        if name != "base":
            gain, gain_se = mean_sem([a - b for a, b in zip(s, base, strict=True)])
            _, lo, hi = win_rate_ci(s, base)
            entry |= {"win_rate_vs_base": r(win_rate(s, base)), "win_rate_vs_base_lo": r(lo),
                      "win_rate_vs_base_hi": r(hi), "gain_vs_base": r(gain),
                      "gain_vs_base_sem": r(gain_se), "gain_z": r(gain / gain_se if gain_se else None, 2),
                      **length_matched(s, base, words[name], words["base"])}
        out[name] = entry
    out["weak_vs_human_win_rate"] = (r(win_rate(scores["weak"], scores["human"]))
                                     if "weak" in scores and "human" in scores else None)
    out["head_to_head"] = head_to_head(scores)
    return out


def length_matched(a: list[float], b: list[float], words_a: list[int], words_b: list[int]) -> dict:
    """Win rate of a over b on the prompts where the two responses have about the same length (LENGTH_MATCH):
    longer answers win most judges, so this separates "better" from "longer"."""
    idx = [i for i, (x, y) in enumerate(zip(words_a, words_b, strict=True))
           if abs(x - y) <= LENGTH_MATCH * max(x, y, 1)]
    if not idx:
        return {"win_rate_vs_base_length_matched": None, "n_length_matched": 0}
    return {"win_rate_vs_base_length_matched": r(win_rate([a[i] for i in idx], [b[i] for i in idx])),
            "n_length_matched": len(idx)}


def head_to_head(scores: dict[str, list[float]]) -> dict:
    """Win rate of every aligned target against every other on the same prompts, with a 95% interval."""
    names = [n for n in scores if n != "base"]
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            m, lo, hi = win_rate_ci(scores[a], scores[b])
            out[f"{a}_vs_{b}"] = {"win_rate": r(m), "lo": r(lo), "hi": r(hi), "n_prompts": len(scores[a])}
    return out


def kl_metrics(own: list[float], on_base: list[float]) -> dict:
    """A target's drift from its start, in nats per response: `kl_estimate`, the mean log-ratio
    log pi_target - log pi_start on the target's own evaluation samples (a Monte Carlo estimate of
    KL(target || start)), with its standard error, and `reverse_kl_estimate`, minus the mean on the base's samples
    (of KL(start || target)). Approximate: the samples were drawn with top-k/top-p truncation and `max_new_tokens`,
    and the scored text is the decoded response re-tokenized with the chat template's end of turn, so these are
    mean log-ratios on the evaluation samples, not exact KLs; they rank how far targets moved."""
    m, se = mean_sem(own)
    return {"kl_estimate": r(m), "kl_estimate_sem": r(se), "reverse_kl_estimate": r(-mean_sem(on_base)[0])}


def heldout_pairs(labeled: list, n: int, seed: int) -> list:
    """Up to `n` gold-decided D_l pairs, a seeded choice in file order: no target trains on D_l, so its implicit
    reward's choice there is a held-out preference accuracy (the weak teacher did train on them; it is not scored)."""
    import random

    decided = [p for p in labeled if p.gold is not None]
    if n >= len(decided):
        return decided
    keep = set(random.Random(f"heldout:{seed}").sample(range(len(decided)), n))
    return [p for i, p in enumerate(decided) if i in keep]


def heldout_metrics(reward_1: list[float], reward_2: list[float], gold: list[int]) -> dict:
    """`heldout_accuracy`: share of held-out pairs where the target's implicit reward prefers the gold judge's
    response (an exact tie counts one half); `heldout_pairs`: how many."""
    if not gold:
        return {"heldout_accuracy": None, "heldout_pairs": 0}
    hits = [0.5 if a == b else float((a > b) == (g == 1)) for a, b, g in zip(reward_1, reward_2, gold, strict=True)]
    return {"heldout_accuracy": r(sum(hits) / len(hits)), "heldout_pairs": len(hits)}
