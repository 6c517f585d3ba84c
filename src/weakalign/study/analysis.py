"""The study's statistics over seeds (weakalign.analysis.stats): paired contrasts against the base, the `random` floor
and human; TOST and PGR; the dose-response of gold reward on label accuracy; the calibration checks."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

from weakalign.analysis.stats import holm, mean_sem, paired_contrast, pgr, r, spearman, t_interval, tost_paired
from weakalign.config.feedback import is_calibration, on_line
from weakalign.config.params import Params
from weakalign.study.planning import DRAW_OUTS


def _interval(xs: list[float]) -> dict:
    m, lo, hi = t_interval(xs)
    return {"mean": r(m), "lo": r(lo), "hi": r(hi)}


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return r(sum(xs) / len(xs)) if xs else None


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares line gold reward = a + b * label accuracy through one seed's points, as (a, b); None below 3
    points (two points always lie on a line, so they show nothing) or with a single accuracy."""
    from scipy.stats import linregress

    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    fit = linregress([x for x, _ in points], [y for _, y in points])
    return float(fit.intercept), float(fit.slope)


def noise_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """fit_line through one seed's calibration points, or None where it cannot be inverted (no line, or a slope
    that is not positive)."""
    line = fit_line(points)
    return line if line is not None and line[1] > 0 else None


def seed_points(arms: dict[str, list], accuracy: dict[str, list], names: list[str], i: int) -> list[tuple]:
    """(label accuracy, gold reward) of the arms `names` on seed i, where both are known."""
    return [(accuracy[n][i], arms[n][i]) for n in names if accuracy[n][i] is not None and arms[n][i] is not None]


def effective_accuracies(arms: dict[str, list], accuracy: dict[str, list]) -> dict[str, list[float | None]]:
    """Per seed, the accuracy that gold labels with random flips would need to give an arm's gold reward.

    Within one seed, the calibration arms from the coin (accuracy 0.5) to gold (1.0) - random, noisy_gold_NN,
    gold; `flipped` lies outside the range an arm is compared in - give a line of gold reward on label accuracy;
    an arm's effective accuracy is where its gold reward meets that line. For `human` it answers the study's
    question: how accurate must labels be to do as well as the human labels? Extrapolated, not clipped."""
    cal = [n for n in arms if on_line(n)]
    out: dict[str, list[float | None]] = {}
    for name in arms:
        if is_calibration(name):
            continue
        per_seed = []
        for i, g in enumerate(arms[name]):
            line = noise_line(seed_points(arms, accuracy, cal, i))
            per_seed.append(None if line is None or g is None else (g - line[0]) / line[1])
        out[name] = per_seed
    return out


def _entry(c: dict) -> dict:
    """A paired_contrast for the metrics file: mean, interval and p rounded, and n."""
    return {k: r(c[k]) for k in ("mean", "lo", "hi", "p")} | {"n": c["n"]}


def paired_t(a: list[float | None], b: list[float | None]) -> float | None:
    """The paired t statistic of a - b over the seeds that have both, mean / standard error (stats.mean_sem): the
    statistic of paired_contrast's p. None below 2 seeds or without spread (then it is infinite, and a metrics file
    holds no infinity). Here, not in stats.py: stats.py is pipeline code, in every run's digest."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if len(diffs) < 2 or statistics.stdev(diffs) == 0:  # paired_contrast's test for "no spread"
        return None
    m, se = mean_sem(diffs)
    return m / se


def _versus_random(out: dict, arms: dict) -> tuple[list[tuple[tuple, float | None]], dict[str, dict]]:
    """Every arm but `random` minus the `random` arm of the same seed (same D_u, same test prompts) into
    `sources.<s>.minus_random`: the floor is the target aligned on coin flips, not the base, since DPO on labels
    that carry nothing still moves the policy and costs gold reward through drift. Returns the contrasts Holm
    adjusts over and the unrounded contrasts by arm."""
    family, raw = [], {}
    for name in [n for n in arms if n != "random"]:
        c = raw[name] = paired_contrast(arms[name], arms["random"])  # an unpaired teacher seed is None: dropped
        out["sources"][name]["minus_random"] = _entry(c) | {"t": r(paired_t(arms[name], arms["random"]))}
        family.append((("sources", name, "minus_random"), c["p"]))
    return family, raw


def _equivalence(diffs: list[float], gap: dict | None, st) -> dict:
    """TOST of weak - human (`diffs`, paired by seed) within +-margin, the margin a share
    (`study.equivalence_margin_fraction`) of what human labels add over coin flips, |mean human - random|
    (`gap`, a paired_contrast): "as good as human" is read on the scale of human's own effect. Where that gap's
    interval is not above 0 the margin measures nothing, and random labels could pass as "equivalent to human":
    then `equivalent` is False and `note` says why."""
    frac = st.equivalence_margin_fraction
    out = {"margin_fraction": frac, "margin": None, "lo90": None, "hi90": None, "p": None, "equivalent": False}
    if gap is None or gap["mean"] is None:
        return out | {"note": "no human − random contrast (needs the human and random arms)"}
    margin = frac * abs(gap["mean"])
    t = tost_paired(diffs, margin, st.alpha)
    meaningful = gap["lo"] is not None and gap["lo"] > 0
    note = None if meaningful else (
        "human − random has no interval yet" if gap["lo"] is None
        else "human − random's interval is not above 0, so a margin drawn from it means nothing")
    return out | {"margin": r(margin), "lo90": r(t["lo"]), "hi90": r(t["hi"]), "p": r(t["p"]),
                  "equivalent": bool(t["equivalent"]) and meaningful, "note": note}


def _pgr_entry(g: dict) -> dict:
    return {"mean": r(g["pgr"]), "lo": r(g["lo"]), "hi": r(g["hi"]), "note": g["reason"]}


def _weak_vs_human(out: dict, arms: dict, base: list, st, human_minus_random: dict | None
                   ) -> list[tuple[tuple, float | None]]:
    """The paper's comparison into `out`: weak (and every weak@teacher) minus human paired by seed; TOST of weak
    against human within the fixed `study.tost_margin` (`tost`, kept for comparison) and within a share of the
    human - random gap (`equivalence`, the verdict); PGR with human and with gold as the ceiling over the base, and
    with human as the ceiling over the random floor (`pgr_random`). Returns the contrasts Holm adjusts over."""
    family = []
    for name in [n for n in arms if n == "weak" or n.startswith("weak@")]:
        c = paired_contrast(arms[name], arms["human"])
        if name == "weak":
            out["weak_minus_human"] = _entry(c)
            family.append((("weak_minus_human",), c["p"]))
        else:
            out["sources"][name]["minus_human"] = _entry(c)
            family.append((("sources", name, "minus_human"), c["p"]))
    diffs = [w - h for w, h in zip(arms["weak"], arms["human"], strict=True) if w is not None and h is not None]
    t = tost_paired(diffs, st.tost_margin, st.alpha)
    out["tost"] = {"margin": st.tost_margin, "p": r(t["p"]), "lo90": r(t["lo"]), "hi90": r(t["hi"]),
                   "equivalent": bool(t["equivalent"])}
    out["equivalence"] = _equivalence(diffs, human_minus_random, st)
    for key, ceiling in (("pgr", "human"), ("pgr_gold", "gold")):
        if ceiling in arms:
            out[key] = _pgr_entry(pgr(arms["weak"], base, arms[ceiling]))
    if "random" in arms:
        out["pgr_random"] = _pgr_entry(pgr(arms["weak"], arms["random"], arms["human"]))
    return family


def dose_response_slopes(arms: dict[str, list], accuracy: dict[str, list]) -> list[float | None]:
    """Per seed, the least-squares slope of gold reward on label accuracy over the calibration sources (gold,
    random, flipped, noisy_gold_NN: accuracies set by construction, from 0 to 1); None for a seed without a line.
    Positive over seeds is what "the instrument responds to label quality" means."""
    cal = [n for n in arms if is_calibration(n)]
    n_seeds = len(next(iter(arms.values()), []))
    lines = [fit_line(seed_points(arms, accuracy, cal, i)) for i in range(n_seeds)]
    return [None if line is None else line[1] for line in lines]


def gold_per_nat(golds: list, base: list, kls: list) -> float | None:
    """Gold reward gained over the base per nat of KL to the start: the mean gain over the mean KL, over the seeds
    that have both. A ratio of means (as PGR), not a mean of per-seed ratios, which a seed whose KL is near 0
    blows up. None where no seed has both or the mean KL is not above 0."""
    seeds = [(g - b, k) for g, b, k in zip(golds, base, kls, strict=True) if None not in (g, b, k)]
    if not seeds:
        return None
    kl = sum(k for _, k in seeds) / len(seeds)
    return r(sum(g for g, _ in seeds) / len(seeds) / kl) if kl > 0 else None


def _dose_response(sources: dict, arms: list[str]) -> dict:
    """Does a source's label accuracy predict its target's gold reward? Spearman over every arm, and over the
    calibration sources alone (whose accuracies are set by construction)."""
    out = {}
    calibration = [n for n in arms if is_calibration(n)]
    for key, names in (("dose_response_spearman", arms), ("calibration_spearman", calibration)):
        points = [(sources[n]["label_accuracy"], sources[n]["gold_reward"]["mean"]) for n in names]
        points = [(a, g) for a, g in points if a is not None and g is not None]
        rho = spearman([a for a, _ in points], [g for _, g in points])
        out[key] = r(rho[0]) if rho else None
    return out


def other_draw(main: dict, run: dict | None) -> str | None:
    """Why `run` (a teacher run) did not draw its seed's data as `main` did, or None where it did or did not run.
    The base's gold reward is the base sampled on the same prompts with the same seed: equal only where the machine
    computes alike; the pairs' and D_u's hashes, where both summaries have them, must agree too."""
    if run is None:
        return None
    if run["base"]["gold_reward"] != main["base"]["gold_reward"]:
        return f"base gold reward {run['base']['gold_reward']} against {main['base']['gold_reward']} in {main['run']}"
    for out in DRAW_OUTS:
        a, b = (x.get("data", {}).get(out) for x in (main, run))
        if a and b and a != b:
            return f"{out} md5 {b[:8]} against {a[:8]} in {main['run']}"
    return None


def machines(summaries: dict[str, dict]) -> list[dict]:
    """Each machine the runs ran on, with its runs; runs whose summary predates the record under `machine: null`."""
    groups: dict[str, dict] = {}
    for run, s in sorted(summaries.items()):
        m = s.get("machine")
        key = json.dumps(m, sort_keys=True)
        groups.setdefault(key, {"machine": m, "runs": []})["runs"].append(run)
    return list(groups.values())


def _arms(st, seeds: list[int], summaries: dict[str, dict]) -> tuple[dict[str, dict[str, list]], dict[str, str]]:
    """Per seed (aligned with `seeds`) each arm's gold reward, label accuracy, KL and held-out accuracy, by field
    then arm (`weak@<teacher>` for the teacher runs), and the teacher runs left out as unpaired (run -> why)."""
    main = [summaries[f"s{s}"] for s in seeds]
    # A teacher run is compared with its seed's main run (its human target, its base, its calibration line), so it
    # counts only where it drew the same data: on another machine the same seed samples other pairs.
    unpaired = {}
    for name in st.teachers:
        for s, m in zip(seeds, main, strict=True):
            why = other_draw(m, summaries.get(f"s{s}-{name}"))
            if why:
                unpaired[f"s{s}-{name}"] = why

    def per_seed(source: str, field: str, teacher: str | None = None) -> list[float | None]:
        if teacher is None:
            return [m["sources"].get(source, {}).get(field) for m in main]
        return [None if f"s{s}-{teacher}" in unpaired else
                summaries.get(f"s{s}-{teacher}", {}).get("sources", {}).get("weak", {}).get(field) for s in seeds]

    fields = {}
    for field in ("gold_reward", "label_accuracy", "kl_estimate", "heldout_accuracy"):
        fields[field] = {s: per_seed(s, field) for s in st.sources}
        fields[field] |= {f"weak@{name}": per_seed("weak", field, teacher=name) for name in st.teachers}
    return fields, unpaired


def _teacher_size(st, sources: dict) -> dict:
    """Label accuracy and gold reward of each teacher cut to its first N layers (`base@layers=N`), by N."""
    out = {}
    for name, overrides in st.teachers.items():
        m = re.search(r"@layers=(\d+)$", str(overrides.get("train_weak.model", "")))
        if m:
            s = sources[f"weak@{name}"]
            out[m.group(1)] = {"label_accuracy": s["label_accuracy"], "gold_reward": s["gold_reward"]}
    return out


def analyse(params: Params, summaries: dict[str, dict]) -> dict:
    """metrics/study.json from the current run summaries (see the package docstring for what is computed)."""
    st = params.study
    seeds = [s for s in st.seeds if f"s{s}" in summaries]
    base = [summaries[f"s{s}"]["base"]["gold_reward"] for s in seeds]
    fields, unpaired = _arms(st, seeds, summaries)
    arms, accuracy = fields["gold_reward"], fields["label_accuracy"]  # gold reward per seed, aligned with `seeds`
    out: dict[str, Any] = {"n_seeds": len(seeds), "seeds": seeds, "model": params.base.model,
                           "judge": params.judge.name, "machines": machines(summaries), "unpaired_runs": unpaired,
                           "base": {"gold_reward": _interval(base)}, "sources": {}}
    family: list[tuple[tuple, float | None]] = []  # (where in `out`, p): the contrasts Holm adjusts over
    for name, golds in arms.items():
        gain = paired_contrast(golds, base)
        kl = fields["kl_estimate"][name]
        out["sources"][name] = {
            "label_accuracy": _mean(accuracy[name]),
            "label_accuracy_interval": _interval([a for a in accuracy[name] if a is not None]),
            "gold_reward": _interval([g for g in golds if g is not None]),
            "gain_vs_base": _entry(gain),
            "kl_estimate": _mean(kl),
            "gold_per_nat": gold_per_nat(golds, base, kl),
            "heldout_accuracy": _mean(fields["heldout_accuracy"][name]),
        }
        family.append((("sources", name, "gain_vs_base"), gain["p"]))
    versus_random: dict[str, dict] = {}
    if "random" in arms:
        floor_family, versus_random = _versus_random(out, arms)
        family += floor_family
    if "weak" in arms and "human" in arms:
        family += _weak_vs_human(out, arms, base, st, versus_random.get("human"))
    for name, eff in effective_accuracies(arms, accuracy).items():
        xs = [x for x in eff if x is not None]
        out["sources"][name]["effective_accuracy"] = _interval(xs) | {"n": len(xs)}
    if "human" in out["sources"] and "effective_accuracy" in out["sources"]["human"]:
        out["accuracy_to_match_human"] = out["sources"]["human"]["effective_accuracy"]
    for (path, p), adj in zip(family, holm([p for _, p in family]), strict=True):
        node = out
        for k in path:
            node = node[k]
        node["p_holm"] = r(adj)
    out |= _dose_response(out["sources"], list(arms))
    slopes = [x for x in dose_response_slopes(arms, accuracy) if x is not None]
    out["dose_response_slope"] = _interval(slopes) | {"n": len(slopes)}
    out["checks"] = calibration_checks(out)
    teacher_size = _teacher_size(st, out["sources"])
    if teacher_size:
        out["teacher_size"] = teacher_size
    return out


def calibration_checks(out: dict) -> dict[str, bool | None]:
    """The sandbox is an instrument only if these hold (None: the arm did not run or has no interval yet). Every
    contrast is against the `random` arm of the same seed, not the base: DPO on coin flips moves the policy too
    and costs gold reward through drift, so "above the base" would credit labels with what drift takes away."""
    s = out["sources"]

    def vs_random(name: str) -> dict | None:
        c = s.get(name, {}).get("minus_random")
        return c if c and c.get("lo") is not None else None

    flp, gold, human = vs_random("flipped"), vs_random("gold"), vs_random("human")
    # The default weak teacher must label D_u clearly better than a coin, and the teachers of the curve must differ
    # in accuracy, or "how accurate must weak labels be" has no range to be read on.
    weak = s.get("weak", {}).get("label_accuracy_interval") or {}
    teachers = [v["label_accuracy"] for n, v in s.items()
                if (n == "weak" or n.startswith("weak@")) and v.get("label_accuracy") is not None]
    slope, rho, eq = out.get("dose_response_slope") or {}, out.get("calibration_spearman"), out.get("equivalence")
    # t >= 4 (two-sided p about 0.016 on 4 df): human labels must stand clearly above coin flips before their gap
    # can scale an equivalence margin. An interval (n >= 2) without a t means no spread, so t is infinite.
    human_t4 = None if human is None else human["lo"] > 0 and (human["t"] is None or human["t"] >= 4)
    return {"at_least_5_seeds": out["n_seeds"] >= 5,  # the bar; fewer seeds give intervals too wide to calibrate
            "flipped_below_random": None if flp is None else flp["hi"] < 0,
            "gold_above_random": None if gold is None else gold["lo"] > 0,
            "human_above_random_t4": human_t4,
            "dose_response_slope_positive": None if slope.get("lo") is None else slope["lo"] > 0,
            "calibration_spearman_at_least_0_9": None if rho is None else rho >= 0.9,
            # margin = fraction x gap, so margin <= half the gap is fraction <= 0.5; compared as the fraction, since
            # the rounded margin and gap could differ in the last digit.
            "equivalence_margin_at_most_half_gap": None if not eq or eq["margin"] is None
            else eq["margin_fraction"] <= 0.5,
            "weak_teacher_at_least_0_60": None if weak.get("lo") is None
            else weak["mean"] >= 0.60 and weak["lo"] > 0.55,
            "teachers_span_0_10": None if len(teachers) < 2 else max(teachers) - min(teachers) >= 0.10}


CHECK_LABELS = {"at_least_5_seeds": "at least 5 seeds", "flipped_below_random": "flipped below random",
                "gold_above_random": "gold above random", "human_above_random_t4": "human above random with t ≥ 4",
                "dose_response_slope_positive": "dose-response slope above 0",
                "calibration_spearman_at_least_0_9": "calibration Spearman ≥ 0.9",
                "equivalence_margin_at_most_half_gap": "equivalence margin ≤ half the human − random gap",
                "weak_teacher_at_least_0_60": "weak teacher's label accuracy ≥ 0.60 (95% interval above 0.55)",
                "teachers_span_0_10": "the teachers' label accuracies span ≥ 0.10"}


def check_label(name: str) -> str:
    return CHECK_LABELS.get(name, name.replace("_", " "))


def check_verdict(ok: bool | None) -> str:
    """One check's outcome, the same words in the README's headline and in the report."""
    return "not measurable yet" if ok is None else "yes" if ok else "NO"
