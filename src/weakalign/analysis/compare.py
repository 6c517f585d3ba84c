"""Human vs weak feedback on D_u, both against the gold judge, the other labelers (`rm`, `judge`) beside them;
and each feedback source's labels for `align`."""

from __future__ import annotations

import random

from weakalign.analysis.stats import quantile_bins, r, wilson
from weakalign.config.feedback import SKIP, Context, get as get_source
from weakalign.data.split import seeded_share
from weakalign.records.io import DataError
from weakalign.records.schema import JudgeLabel, Pair, Preference, WeakLabel

def judge_feedback_label(x: JudgeLabel, break_ties: bool) -> int | None:
    """The label the `judge` feedback source trains on: the pairwise judge's verdict, or for a tie with
    `break_ties` the response that the mean log-odds over both orders favours (None if it cannot say). Here, not in
    pairwise_judge, so that `compare` runs without importing torch (5 s per run)."""
    if x.label is not None or not break_ties or not x.margin:
        return x.label
    return 1 if x.margin > 0 else 2


def feedback_labels(unlabeled: list[Pair], weak: dict[str, WeakLabel], source: str, seed: int,
                    confident_margin: float = 0.0, others: dict[str, dict[str, int | None]] | None = None,
                    confident_weighting: str = "none") -> list[Preference]:
    """The preferred response of every D_u pair according to one source, by its rule in weakalign.config.feedback; the
    pairs its rule leaves out are left out. `others`: the other labelers' labels (pair id -> 1, 2, or None for the
    judge's ties). With `confident_weighting: margin`, each `weak_confident` label is weighted by
    |margin| / mean |margin|."""
    spec, others = get_source(source), others or {}
    if spec.labeler and not others.get(spec.labeler):
        raise ValueError(f"align.sources: {source!r} has no labels (label_{spec.labeler}.enabled is false)")
    flips = gold_flips(unlabeled, spec.flip_rate, seed) if spec.flip_rate else frozenset()
    ctx = Context(weak=weak, seed=seed, others=others, flips=flips, confident_margin=confident_margin)
    out = []
    for p in unlabeled:
        chosen = spec.rule(p, ctx)
        if chosen is SKIP:
            continue
        if chosen is None:
            raise ValueError(f"pair {p.id} has no {source} label")
        out.append(Preference(pair_id=p.id, chosen=chosen))
    if source == "weak_confident" and confident_weighting == "margin" and out:
        mean = sum(abs(weak[f.pair_id].margin) for f in out) / len(out)
        out = [f.model_copy(update={"weight": round(abs(weak[f.pair_id].margin) / mean, 6) if mean else 1.0})
               for f in out]
    return out


def gold_flips(unlabeled: list[Pair], rate: float, seed: int) -> frozenset[str]:
    """Ids of the gold-decided D_u pairs whose gold label a source with this flip rate inverts: exactly
    round(rate * n) of the n, so the source's accuracy against gold is 1 - rate by construction, nested across
    rates (`seeded_share`)."""
    return seeded_share((p.id for p in unlabeled if p.gold is not None), rate, f"noisy_gold:{seed}")


def weighted_draw(weights: list[float], seed: int) -> list[int]:
    """Indices of as many draws as there are weights, with replacement, in proportion to the weights (seeded).

    Training on the drawn pairs has the weighted loss as its expectation: TRL's DPOTrainer takes no per-example
    weights, so weighting is done by sampling. All-equal weights mean no draw: every index once, in order."""
    if len(set(weights)) <= 1:
        return list(range(len(weights)))
    return random.Random(f"weights:{seed}").choices(range(len(weights)), weights=weights, k=len(weights))


def feedback_choice(numbered: list[tuple[int, Preference]], d_u: set[str], path: str) -> dict[str, int]:
    """pair id -> chosen response, from a feedback file; every label must be for a D_u pair, and only one.

    A source may leave pairs out (the gold source skips exact ties), never add or repeat them: either means the
    feedback file and D_u come from different runs."""
    choice: dict[str, int] = {}
    for lineno, f in numbered:
        if f.pair_id not in d_u:
            raise DataError(f"{path}:{lineno}: label for pair {f.pair_id!r}, which is not in D_u")
        if f.pair_id in choice:
            raise DataError(f"{path}:{lineno}: a second label for pair {f.pair_id!r}")
        choice[f.pair_id] = f.chosen
    return choice


def _share(hits: list[bool]) -> float | None:
    return r(sum(hits) / len(hits)) if hits else None


def _with_ci(name: str, hits: list[bool] | None) -> dict:
    """{name, name_lo, name_hi}: a share and its 95% Wilson interval (all None without data)."""
    if not hits:
        return {name: None, f"{name}_lo": None, f"{name}_hi": None}
    lo, hi = wilson(sum(hits), len(hits))
    return {name: _share(hits), f"{name}_lo": r(lo), f"{name}_hi": r(hi)}


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def check_covers(unlabeled: list[Pair], labels: dict, path: str, what: str = "weak") -> None:
    """A labeler's labels must cover D_u exactly: a gap or a stray label means the files come from different runs."""
    ids = {p.id for p in unlabeled}
    missing = [p.id for p in unlabeled if p.id not in labels]
    if missing:
        raise DataError(f"{path}: no {what} label for {len(missing)} of {len(ids)} D_u pairs, e.g. {missing[:3]}")
    stray = sorted(set(labels) - ids)
    if stray:
        raise DataError(f"{path}: {len(stray)} {what} labels for pairs not in D_u, e.g. {stray[:3]}")


def source_metrics(unlabeled: list[Pair], labels: list[Preference]) -> dict:
    """What one feedback source trains its target on: how many D_u pairs, and how often its chosen response is
    the gold judge's (on the pairs gold decides) and the human's. The x-axis of the study's dose-response curve."""
    by_id = {p.id: p for p in unlabeled}
    pairs = [(by_id[f.pair_id], f.chosen) for f in labels]
    gold = [p.gold == c for p, c in pairs if p.gold is not None]
    return {"n_pairs": len(pairs),
            "label_accuracy": _share(gold),
            "agreement_human": _share([p.human == c for p, c in pairs if p.human is not None])}


def labeler_metrics(unlabeled: list[Pair], weak: dict[str, WeakLabel], name: str,
                    labels: dict[str, int | None] | None) -> dict:
    """How one other labeler (rm, judge) compares with the human labels and the gold judge, on the D_u pairs it
    decides (the judge leaves ties undecided); every key is there, null, when the labeler did not run."""
    if not labels:
        return {**_with_ci(f"agreement_{name}_human", None), **_with_ci(f"accuracy_{name}_vs_gold", None),
                f"agreement_{name}_weak": None, f"n_{name}_decided": None}
    decided = [p for p in unlabeled if labels[p.id] is not None]
    gold = [p for p in decided if p.gold is not None]
    return {**_with_ci(f"agreement_{name}_human", [labels[p.id] == p.human for p in decided]),
            **_with_ci(f"accuracy_{name}_vs_gold", [labels[p.id] == p.gold for p in gold] or None),
            f"agreement_{name}_weak": _share([labels[p.id] == weak[p.id].label for p in decided]),
            f"n_{name}_decided": len(decided)}


def feedback_metrics(n_labeled: int, unlabeled: list[Pair], weak: dict[str, WeakLabel], n_bins: int) -> tuple[dict, list[dict]]:
    """metrics/feedback.json and the agreement-by-margin plot rows (weak labels must cover D_u: check_covers)."""
    human = [p.human for p in unlabeled]
    wk = [weak[p.id].label for p in unlabeled]
    gold = [p.gold for p in unlabeled]
    has_gold = any(g is not None for g in gold)
    agree = [h == w for h, w in zip(human, wk, strict=True)]
    gi = [i for i, g in enumerate(gold) if g is not None]  # pairs the gold judge decides
    disagree_gold = [i for i in gi if not agree[i]]
    # Gold-reward gap |g1 - g2| on pairs where weak and human agree vs disagree: are disagreements the close calls?
    gap = {i: abs(unlabeled[i].gold_1 - unlabeled[i].gold_2) for i in gi}
    gap_agree, gap_disagree = [gap[i] for i in gi if agree[i]], [gap[i] for i in gi if not agree[i]]
    metrics = {
        "n_labeled": n_labeled,
        "n_unlabeled": len(unlabeled),
        **_with_ci("agreement_weak_human", agree),
        **_with_ci("accuracy_human_vs_gold", [human[i] == gold[i] for i in gi] if has_gold else None),
        **_with_ci("accuracy_weak_vs_gold", [wk[i] == gold[i] for i in gi] if has_gold else None),
        "n_gold_decided": len(gi) if has_gold else None,
        "n_disagree": agree.count(False),
        **_with_ci("gold_backs_weak_when_disagree", [wk[i] == gold[i] for i in disagree_gold] if has_gold else None),
        "n_disagree_gold_decided": len(disagree_gold) if has_gold else None,
        "gold_gap_mean_agree": r(sum(gap_agree) / len(gap_agree)) if gap_agree else None,
        "gold_gap_mean_disagree": r(sum(gap_disagree) / len(gap_disagree)) if gap_disagree else None,
        "gold_gap_median_agree": r(_median(gap_agree)),
        "gold_gap_median_disagree": r(_median(gap_disagree)),
        "weak_label_1_share": _share([w == 1 for w in wk]),
        "human_label_1_share": _share([h == 1 for h in human]),
    }
    margins = [abs(weak[p.id].margin) for p in unlabeled]
    # The plot's rows, one per (bin, measure): the share with its 95% Wilson interval and the pairs it rests on,
    # so each measure gets its own colour, error bars and count (template .dvc/plots/agreement.json).
    rows = []
    for b, idx in enumerate(quantile_bins(margins, n_bins)):
        if not idx:
            continue
        gidx = [i for i in idx if gold[i] is not None]
        lo, hi = r(min(margins[i] for i in idx)), r(max(margins[i] for i in idx))
        measures = {"agreement_weak_human": [agree[i] for i in idx]}
        if has_gold:
            measures |= {"accuracy_weak_vs_gold": [wk[i] == gold[i] for i in gidx],
                         "accuracy_human_vs_gold": [human[i] == gold[i] for i in gidx]}
        for measure, hits in measures.items():
            ci = _with_ci("share", hits)
            rows.append({"bin": b, "bin_label": f"{b + 1}: |margin| {lo:.3g}-{hi:.3g}", "margin_lo": lo,
                         "margin_hi": hi, "measure": measure, "share": ci["share"], "lo": ci["share_lo"],
                         "hi": ci["share_hi"], "n": len(hits)})
    return metrics, rows
