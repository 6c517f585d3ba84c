"""The human-readable summary (reports/summary.md) and the gold-reward plot rows."""

from __future__ import annotations

import html
import re
from pathlib import Path

from weakalign.config.feedback import rank as bar_rank
from weakalign.records.io import atomic_file
from weakalign.records.schema import Pair, WeakLabel


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#+!|~])")


# GitHub/GitLab (GFM) turn bare URLs, www. addresses and e-mail addresses into links, after backslash escapes are
# resolved: an escaped "." after www and an escaped ":" after a scheme stop it (checked with cmark-gfm); for "@"
# nothing but markup between the two halves does, so an empty HTML comment (invisible when rendered) goes there.
_WWW = re.compile(r"(?i)\b(www)\.")
_SCHEME = re.compile(r"(?i)\b(https?|ftp|mailto|xmpp)(?=:)")
# Bidirectional controls reorder what a reader sees (U+202E shows "txt.exe" as "exe.txt"): shown by code point.
# Written out as [U+XXXX] rather than passed to a reader: bidirectional controls (they reorder what is shown) and
# the C0/C1 controls other than whitespace (ESC starts terminal escapes when the file is printed, BEL rings, NUL
# ends strings in C readers).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def md(text: str, limit: int = 300) -> str:
    """Text from data, inert inside a Markdown table cell: one line, shortened, HTML-escaped (no tags, no
    entities), Markdown punctuation backslash-escaped (no links, images, code or emphasis; no cell breaks), no GFM
    autolinks, and bidirectional and control characters written out as [U+202E], [U+001B]."""
    text = _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", " ".join(text.split()))
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    text = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))  # quotes are inert outside tags
    text = _SCHEME.sub(r"\1\\", _WWW.sub(r"\1\\.", text))
    return text.replace("@", "<!-- -->@")


def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _gap_reading(agree: float | None, disagree: float | None) -> str:
    """What the mean gold gaps say, from their order: never a fixed sentence beside numbers that may say otherwise."""
    if agree is None or disagree is None or agree == disagree:
        return ""
    if disagree < agree:
        return " (a smaller gap where they disagree: the disagreements are closer calls)"
    return " (a larger gap where they disagree: the disagreements are not closer calls)"


def _share_row(label: str, m: dict, key: str, n: int | None) -> str:
    lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
    interval = f"{_f(lo)}–{_f(hi)}" if lo is not None else "n/a"
    return f"| {label} | {_f(m.get(key))} | {interval} | {n if n is not None else 'n/a'} |"


def headline(feedback: dict, alignment: dict) -> dict:
    """metrics/headline.json: the ten numbers a sweep compares (`dvc exp show` / `dvc metrics show` on this file).

    Gold reward of the base and of the targets aligned on human, weak, gold and random labels (null where that
    source was not aligned or there is no gold judge); weak - human on the same prompts (a difference of means over
    one run's prompts: one draw, not an interval over seeds, which is `make study`'s); the performance gap
    recovered (weak - base) / (human - base), null unless the human target beats the base; and the weak-human
    label agreement and the weak and human labels' accuracy against gold on D_u."""
    def g(source: str) -> float | None:
        return alignment.get(source, {}).get("gold_reward_mean")

    base, human, weak = g("base"), g("human"), g("weak")
    known = None not in (base, human, weak)
    return {"gold_reward_base": base, "gold_reward_human": human, "gold_reward_weak": weak,
            "gold_reward_gold": g("gold"), "gold_reward_random": g("random"),
            "weak_minus_human": round(weak - human, 4) if known else None,
            "pgr": round((weak - base) / (human - base), 4) if known and human > base else None,
            # Named apart from feedback.json's keys, so that `dvc exp show` needs no file prefix for them.
            "agreement": feedback.get("agreement_weak_human"),
            "accuracy_weak": feedback.get("accuracy_weak_vs_gold"),
            "accuracy_human": feedback.get("accuracy_human_vs_gold")}


def gold_reward_rows(alignment: dict) -> list[dict]:
    """The gold-reward plot's rows (mean and 95% interval over the test prompts), in the registry's bar order
    (weakalign.config.feedback.rank); `order` keeps that order in the plot."""
    names = [n for n, e in alignment.items() if isinstance(e, dict) and e.get("gold_reward_mean") is not None]
    rows = []
    for i, name in enumerate(sorted(names, key=lambda n: bar_rank(n, names))):
        m, se = alignment[name]["gold_reward_mean"], alignment[name]["gold_reward_sem"]
        rows.append({"order": i, "model": name, "gold_reward_mean": m, "lo": round(m - 1.96 * se, 4),
                     "hi": round(m + 1.96 * se, 4), "n_prompts": alignment[name]["n_prompts"]})
    return rows


# dvclive curve (its path under plots/metrics) -> column of plots/training_curves.json; the rest keep their path.
CURVE_NAMES = {"rewards/margins": "margins", "rewards/accuracies": "accuracies"}


def training_curves(runs: dict[str, Path]) -> list[dict]:
    """Loss, reward margin and accuracy per logged point of each run, read from its dvclive folder.

    `runs` maps a run's display name to its dvclive folder (e.g. {"target (weak)": Path("dvclive/align/weak")}).
    dvclive's step is the optimizer step of the point (harness.StepCurves); `role` puts the weak teacher's curves
    apart from the targets'.
    """
    rows = []
    for name, live in runs.items():
        base = live / "plots" / "metrics"
        cols: dict[str, dict[int, float]] = {}
        for path in [base / "loss.tsv", base / "rewards/margins.tsv", base / "rewards/accuracies.tsv"]:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: dvclive curve missing; rerun the training stage")
        # Every curve dvclive logged (learning rate, grad norm, chosen/rejected rewards and log-probs ...), so that
        # `dvc plots show` has them all; train/* are the one-point end-of-run summaries.
        for path in sorted(base.rglob("*.tsv")):
            rel = path.relative_to(base).with_suffix("").as_posix()
            if rel.startswith("train/"):
                continue
            key = CURVE_NAMES.get(rel, rel.replace("/", "_"))
            with path.open(encoding="utf-8") as f:
                next(f)  # header: step<TAB>name
                cols[key] = {int(a): float(b) for a, b in (line.rstrip("\n").split("\t") for line in f if line.strip())}
        # Only the curves logged with every loss point (not total_flos, logged once): DVC's plots need every row
        # to carry the same columns.
        cols = {k: v for k, v in cols.items() if set(cols["loss"]) <= set(v)}
        for step in sorted(cols["loss"]):
            rows.append({"run": name, "role": "weak teacher" if name == "weak teacher" else "targets", "step": step,
                         **{k: round(v[step], 6) for k, v in cols.items() if step in v}})
    common = set.intersection(*(set(r) for r in rows)) if rows else set()
    return [{k: v for k, v in r.items() if k in common} for r in rows]


def disagreements(unlabeled: list[Pair], weak: dict[str, WeakLabel], n: int) -> list[tuple[Pair, WeakLabel]]:
    """The `n` pairs where weak and human labels differ and the weak teacher is most confident."""
    rows = [(p, weak[p.id]) for p in unlabeled if p.id in weak and weak[p.id].label != p.human]
    return sorted(rows, key=lambda t: (-abs(t[1].margin), t[0].id))[:n]


def labeler_rows(feedback: dict, cost: dict[str, dict | None]) -> list[str]:
    """One table row per labeler of D_u (weak, rm, judge): agreement with the human labels and accuracy against
    gold, each with its 95% interval and the pairs it rests on, ties, and the cost of training and labeling.

    `cost` maps a labeler to its stage metrics (label_weak.json with the weak teacher's `train_seconds` added,
    label_rm.json, label_judge.json); a labeler that is off has `enabled: false` there."""
    rows = []
    for name, m in cost.items():
        if m is None or m.get("enabled") is False:
            rows.append(f"| {name} | off (`label_{name}.enabled: false`) | | | | | |")
            continue

        def cell(key: str) -> str:
            lo, hi = feedback.get(f"{key}_lo"), feedback.get(f"{key}_hi")
            return f"{_f(feedback.get(key))} ({_f(lo)}–{_f(hi)})" if lo is not None else _f(feedback.get(key))

        n = feedback["n_unlabeled"] if name == "weak" else feedback.get(f"n_{name}_decided")
        ties = f"{m['n_ties']} of {m['n_pairs']}" if "n_ties" in m else "none"
        train = f"{m['train_seconds']:.0f}" if m.get("train_seconds") is not None else "none"
        rows.append(f"| {name} | {cell(f'agreement_{name}_human')} | {cell(f'accuracy_{name}_vs_gold')} | {n} | "
                    f"{ties} | {train} | {_f(m.get('label_seconds_per_1000_pairs'), 0)} s, "
                    f"{_f(m.get('label_tflops_per_1000_pairs'), 1)} TFLOP |")
    return rows


def headline_paragraph(h: dict) -> str:
    """The report's first paragraph, from metrics/headline.json alone (no number typed by hand)."""
    if h["gold_reward_weak"] is None or h["gold_reward_human"] is None:
        return ("This run has no gold reward for both the weak- and the human-aligned target (no gold judge, or "
                "one of them not aligned): see the tables.")
    bounds = "; ".join(f"{name} labels {_f(h[f'gold_reward_{name}'])}" for name in ("gold", "random")
                       if h[f"gold_reward_{name}"] is not None)
    pgr = f", a performance gap recovered of {_f(h['pgr'], 2)}" if h["pgr"] is not None else ""
    return (f"On this run, the target aligned on the weak teacher's labels reaches a mean gold reward of "
            f"{_f(h['gold_reward_weak'])}, against {_f(h['gold_reward_human'])} for the one aligned on human labels "
            f"(weak - human {h['weak_minus_human']:+.3f}{pgr}; the base {_f(h['gold_reward_base'])}"
            + (f"; {bounds}" if bounds else "") + "). The weak labels agree with the human ones on "
            f"{_f(h['agreement'])} of D_u; against the gold judge the weak labels are right on "
            f"{_f(h['accuracy_weak'])} and the human ones on {_f(h['accuracy_human'])}. One run is one "
            "draw (one seed, one machine): the intervals below are over its test prompts, not over seeds; "
            "`make study` gives the claim about the method (reports/study.md).")


def provenance(params_path: str, base_model: str, weak_model: str, data: dict[str, str]) -> list[str]:
    """Where the report's numbers come from: the commit checked out when it ran, the params file's hash, the
    models and the sha256 of the data files."""
    import hashlib
    import subprocess

    from weakalign.modeling.saved_models import origin

    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else "not a git checkout"
    sha = {name: hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for name, p in data.items()}
    return ["## Provenance", "", "| what | value |", "|---|---|",
            f"| commit checked out when the report ran | `{commit}` |",
            f"| params ({md(params_path)}, sha256) | `{hashlib.sha256(Path(params_path).read_bytes()).hexdigest()[:16]}` |",
            f"| target's base model | `{md(base_model)}` ({md(origin(base_model))}) |",
            f"| weak teacher's starting point | `{md(weak_model)}` |",
            *[f"| {md(name)} (sha256) | `{h}` |" for name, h in sha.items()], ""]


def figure(gold_rows: list[dict], agreement_rows: list[dict], path: Path) -> None:
    """reports/summary.png: the gold reward of each model (mean, 95% interval over prompts) and the weak-human
    agreement and accuracies by |weak margin| bin (95% Wilson intervals, chance dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    if gold_rows:
        xs = range(len(gold_rows))
        means = [r_["gold_reward_mean"] for r_ in gold_rows]
        a.bar(xs, means, color=["#7f7f7f"] + ["#4c78a8"] * (len(gold_rows) - 1))
        a.errorbar(xs, means, yerr=[[m - r_["lo"] for m, r_ in zip(means, gold_rows, strict=True)],
                                    [r_["hi"] - m for m, r_ in zip(means, gold_rows, strict=True)]],
                   fmt="none", ecolor="black", capsize=3)
        a.set_xticks(list(xs), [r_["model"] for r_ in gold_rows], rotation=30, ha="right", fontsize=8)
    a.set_ylabel("mean gold reward (95% interval over prompts)")
    a.set_title("Gold reward on the test prompts", fontsize=10)
    colours = {"agreement_weak_human": "#4c78a8", "accuracy_weak_vs_gold": "#f58518", "accuracy_human_vs_gold": "#54a24b"}
    for measure, colour in colours.items():
        rows = [r_ for r_ in agreement_rows if r_["measure"] == measure and r_["share"] is not None]
        if rows:
            b.errorbar([r_["bin"] + 1 for r_ in rows], [r_["share"] for r_ in rows], capsize=3, marker="o",
                       yerr=[[r_["share"] - r_["lo"] for r_ in rows], [r_["hi"] - r_["share"] for r_ in rows]],
                       color=colour, label=measure.replace("_", " "))
    b.axhline(0.5, color="#888888", ls="--", lw=0.8, label="chance")
    b.set_ylim(0, 1)
    bins = sorted({r_["bin"] for r_ in agreement_rows})
    b.set_xticks([x + 1 for x in bins])
    b.set_xlabel("|weak margin| quantile bin (low to high)")
    b.set_ylabel("share of pairs")
    b.set_title("Agreement and accuracy by weak confidence", fontsize=10)
    b.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _targets_table(alignment: dict) -> list[str]:
    """Each aligned model on the test prompts against the base, then every pair of them head to head."""
    lines = ["## Aligned targets on the test prompts", "",
             "| model | gold reward (mean ± s.e.) | gain vs base (paired, ± s.e.) | win rate vs base (95% interval) "
             "| win rate, length-matched (prompts) | words | prompts |",
             "|---|---|---|---|---|---|---|"]
    models = {name: e for name, e in alignment.items() if isinstance(e, dict) and "n_prompts" in e}
    for name, e in models.items():
        gain = (f"{e['gain_vs_base']:+.3f} ± {e['gain_vs_base_sem']:.3f} (z = {e['gain_z']})"
                if e.get("gain_vs_base") is not None else "")
        gold = "n/a" if e["gold_reward_mean"] is None else f"{e['gold_reward_mean']:.3f} ± {e['gold_reward_sem']:.3f}"
        win = (f"{_f(e.get('win_rate_vs_base'))} ({_f(e.get('win_rate_vs_base_lo'))}–{_f(e.get('win_rate_vs_base_hi'))})"
               if e.get("win_rate_vs_base") is not None else "n/a")
        matched = (f"{_f(e.get('win_rate_vs_base_length_matched'))} ({e['n_length_matched']})"
                   if "n_length_matched" in e else "")
        lines.append(f"| {name} | {gold} | {gain} | {win} | {matched} | {e['mean_words']} | {e['n_prompts']} |")
    h2h = alignment.get("head_to_head") or {}
    if h2h:
        lines += ["", "Head to head, same test prompts (ties count one half; 95% interval over prompts):", "",
                  "| pair | win rate of the first | 95% interval | prompts |", "|---|---|---|---|"]
        for key, v in h2h.items():
            a, _, b = key.partition("_vs_")
            interval = f"{_f(v['lo'])}–{_f(v['hi'])}" if v["lo"] is not None else "n/a"
            lines.append(f"| {md(a)} vs {md(b)} | {_f(v['win_rate'])} | {interval} | {v['n_prompts']} |")
    return lines


def _training_table(training: dict[str, dict]) -> list[str]:
    """Each training run: its final batches, its fit on its own pairs, and whether it learned."""
    lines = ["", "## Training", "",
             "Final: the last quarter of the logged training batches. Fit: the trained policy on all its own "
             "training pairs, which decides `learned` (weakalign.training.dpo.fit_on_own_pairs).", "",
             "| run | pairs | steps | final loss | final margin | final accuracy | fit loss | fit margin | "
             "fit accuracy | learned | truncated | dropped |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in training.items():
        lines.append(f"| {name} | {t['n_train_pairs']} | {t['steps']} | {_f(t['final_loss'])} | "
                     f"{_f(t['final_margin'])} | {_f(t['final_accuracy'])} | {_f(t.get('fit_loss'))} | "
                     f"{_f(t.get('fit_margin'))} | {_f(t.get('fit_accuracy'))} | "
                     f"{'yes' if t['learned'] else '**no**'} | {t['n_train_pairs_truncated']} | "
                     f"{t['n_train_pairs_dropped_too_long']} |")
    return lines


def _disagreements_table(examples: list[tuple[Pair, WeakLabel]]) -> list[str]:
    """The weak teacher's most confident disagreements with the human labels."""
    lines = ["", f"## The weak teacher's most confident disagreements with the human labels ({len(examples)})", "",
             "| prompt | weak's choice | human's choice | weak margin | gold (weak's, human's) |",
             "|---|---|---|---|---|"]
    for p, w in examples:
        pick = {1: p.response_1, 2: p.response_2}
        gw = p.gold_1 if w.label == 1 else p.gold_2
        gh = p.gold_1 if p.human == 1 else p.gold_2
        gold = "n/a" if gw is None else f"{gw:.2f}, {gh:.2f}"
        lines.append(f"| {md(p.prompt)} | {md(pick[w.label])} | {md(pick[p.human])} | {w.margin:+.3f} | {gold} |")
    return lines


def summary_markdown(feedback: dict, alignment: dict, training: dict[str, dict],
                     examples: list[tuple[Pair, WeakLabel]], cost: dict[str, dict | None] | None = None,
                     head: dict | None = None, figure_name: str | None = None,
                     provenance_lines: list[str] | None = None) -> str:
    lines = ["# weakalign summary", ""]
    if head is not None:
        lines += [headline_paragraph(head), ""]
    if figure_name:
        lines += [f"![gold reward by model, and agreement by weak confidence]({figure_name})", ""]
    lines += [
             (f"Gold judge: `{alignment.get('gold_judge', 'n/a')}`. " if alignment.get("gold_judge", "none") != "none" else
              "No gold judge (`judge.name: none`): every gold figure below is n/a; the comparison rests on the "
              "human labels alone. ") + f"D_l = {feedback['n_labeled']} human-labeled pairs "
             f"(train the weak teacher); D_u = {feedback['n_unlabeled']} pairs (labeled by the weak teacher).", "",
             "## Feedback on D_u", "",
             "Shares with their 95% Wilson interval, and the number of pairs each rests on.", "",
             "| metric | value | 95% interval | pairs |", "|---|---|---|---|",
             _share_row("weak-human agreement", feedback, "agreement_weak_human", feedback["n_unlabeled"]),
             _share_row("human accuracy vs gold", feedback, "accuracy_human_vs_gold", feedback.get("n_gold_decided")),
             _share_row("weak accuracy vs gold", feedback, "accuracy_weak_vs_gold", feedback.get("n_gold_decided")),
             _share_row("gold backs weak where they disagree", feedback, "gold_backs_weak_when_disagree",
                        feedback.get("n_disagree_gold_decided", feedback["n_disagree"])), "",
             f"Gold-reward gap |g1 − g2| where weak and human agree: mean {_f(feedback.get('gold_gap_mean_agree'))}, "
             f"median {_f(feedback.get('gold_gap_median_agree'))}; where they disagree: mean "
             f"{_f(feedback.get('gold_gap_mean_disagree'))}, median {_f(feedback.get('gold_gap_median_disagree'))}"
             f"{_gap_reading(feedback.get('gold_gap_mean_agree'), feedback.get('gold_gap_mean_disagree'))}.", ""]
    if cost:
        lines += ["## Labelers of D_u", "",
                  "Each labeler against the human labels and the gold judge, on the pairs it decides (95% Wilson "
                  "interval), with its cost: training seconds, and labeling wall time and estimated forward FLOPs "
                  "per 1,000 pairs.", "",
                  "| labeler | agreement with human | accuracy vs gold | pairs decided | ties | training (s) "
                  "| labeling per 1,000 pairs |", "|---|---|---|---|---|---|---|",
                  *labeler_rows(feedback, cost), ""]
    lines += _targets_table(alignment) + _training_table(training) + _disagreements_table(examples)
    if provenance_lines:
        lines += ["", *provenance_lines]
    return "\n".join(lines) + "\n"
