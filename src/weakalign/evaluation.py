"""Alignment metrics: gold reward of each model's responses on the test prompts, and paired win rates."""

from __future__ import annotations

from .stats import mean_sem, r, win_rate


def alignment_metrics(scores: dict[str, list[float] | None], words: dict[str, list[int]]) -> dict:
    """metrics/alignment.json from per-prompt gold scores of `base` and each aligned source (same prompt order).

    For each aligned source: its mean gold reward and standard error, its win rate against the base on the same
    prompts, and the paired gain over the base with the standard error of the per-prompt differences. Without a
    gold judge (scores None) every gold figure is null and the keys stay the same.
    """
    if any(s is None for s in scores.values()):
        gold_keys = ("gold_reward_mean", "gold_reward_sem")
        vs_base = ("win_rate_vs_base", "gain_vs_base", "gain_vs_base_sem", "gain_z")
        out = {name: dict.fromkeys(gold_keys) | {"n_prompts": len(words[name]),
                                                  "mean_words": r(sum(words[name]) / len(words[name]), 2)}
               | (dict.fromkeys(vs_base) if name != "base" else {}) for name in scores}
        return out | {"weak_vs_human_win_rate": None}
    base = scores["base"]
    out: dict = {}
    for name, s in scores.items():
        m, se = mean_sem(s)
        entry = {"gold_reward_mean": r(m), "gold_reward_sem": r(se), "n_prompts": len(s),
                 "mean_words": r(sum(words[name]) / len(words[name]), 2)}
        if name != "base":
            gain, gain_se = mean_sem([a - b for a, b in zip(s, base, strict=True)])
            entry |= {"win_rate_vs_base": r(win_rate(s, base)), "gain_vs_base": r(gain),
                      "gain_vs_base_sem": r(gain_se), "gain_z": r(gain / gain_se if gain_se else None, 2)}
        out[name] = entry
    out["weak_vs_human_win_rate"] = (r(win_rate(scores["weak"], scores["human"]))
                                     if "weak" in scores and "human" in scores else None)
    return out
