"""The study in words: reports/study.md, the README's study block, and metrics/study.json (+ .info.json), every
sentence composed from the analysis' numbers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from weakalign import fingerprint
from weakalign.analysis.report import md
from weakalign.config.feedback import table_order
from weakalign.config.params import Params
from weakalign.fingerprint import code_digest
from weakalign.records.io import atomic_file, info_path, split_metrics, write_json
from weakalign.study.analysis import analyse, check_label, check_verdict
from weakalign.study.planning import current, file_overrides, plan, run_digest, runs_dir
from weakalign.study.plots import figure, plot_rows
from weakalign.study.running import commit_of

log = logging.getLogger("weakalign.study")


def cell(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "–"
    if d.get("lo") is None:
        return f"{d['mean']:+.3f} (no interval)"
    return f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def _with_t(c: dict | None) -> str:
    return cell(c) + (f" (t = {c['t']:.1f})" if c and c.get("t") is not None else "")


def _ratio(g: dict) -> str:
    """A PGR entry in words: its mean and Fieller interval, or why there is none."""
    if g["mean"] is None:
        return f"undefined ({g['note']})"
    if g["lo"] is None:
        return f"{g['mean']:.2f}, no bounded interval ({g['note']})"
    return f"{g['mean']:.2f} [{g['lo']:.2f}, {g['hi']:.2f}]"


def _floor_sentence(out: dict, made: str) -> str:
    s, n = out["sources"], out["n_seeds"]
    arms = ", ".join(f"`{name}` {_with_t(s[name]['minus_random'])}" for name in table_order(list(s))
                     if (s[name].get("minus_random") or {}).get("mean") is not None)  # an arm that ran
    return (f"Over {n} seed{'s' * (n != 1)} (each a whole pipeline run{made}; 95% t-intervals over seeds), each "
            "target against the one aligned on coin flips (`random`: the same seed, D_u and test prompts), in gold "
            f"reward, paired by seed: {arms}. The coin-flip target's own gain over the base is "
            f"{cell(s['random']['gain_vs_base'])}: DPO on labels that carry nothing still moves the policy (drift), "
            "so the floor is that target, not the base.")


def _equivalence_sentence(out: dict) -> str:
    e, gap = out["equivalence"], out["sources"].get("human", {}).get("minus_random")
    if e["margin"] is None:
        return f"No equivalence of weak and human can be tested: {e['note']}."
    tost = f"TOST p = {e['p']}" if e["p"] is not None else "TOST needs 2 seeds"
    if e["note"]:  # the verdict must never let coin-flip-like labels pass as "equivalent to human"
        t = "" if gap.get("t") is None else f", t = {gap['t']:.1f}"
        return (f"Weak is not declared equivalent to human: {e['note']} (human − random: {cell(gap)}{t}; "
                f"{tost} within ±{e['margin']}, {e['margin_fraction']} of that gap).")
    return (f"Equivalence within ±{e['margin']} ({e['margin_fraction']} of the human − random gap) is "
            f"{'shown' if e['equivalent'] else 'not shown'} ({tost}).")


def checks_verdict(checks: dict[str, bool | None]) -> str:
    """What the checks allow, naming every check that fails or cannot be measured (README headline and report)."""
    failed = [check_label(k) for k, v in checks.items() if v is False]
    unknown = [check_label(k) for k, v in checks.items() if v is None]
    if not failed and not unknown:
        return "Every check holds, so the weak-vs-human contrast can be read."
    parts = ([f"fails {len(failed)} of its {len(checks)} checks ({', '.join(failed)})"] if failed else []) + \
        ([f"cannot measure {len(unknown)} yet ({', '.join(unknown)})"] if unknown else [])
    return (f"This study {' and '.join(parts)}: until every check holds, no weak-vs-human claim should be read from "
            "these numbers.")


def answer(out: dict) -> str:
    """The study's answer in a few sentences, every number from `out` (the report; the README has its short form)."""
    s = out["sources"]
    if not out["n_seeds"]:
        return "The study has no finished seed yet: `make study` runs it (docs/STUDY.md)."
    made = (f" of commit{'s' * (len(out['commits']) > 1)} {', '.join(out['commits'])}" if out.get("commits") else "")
    lines = [_floor_sentence(out, made) if "random" in s else
             f"{out['n_seeds']} seeds finished; the study has no `random` arm, so no contrast against the floor."]
    if "weak_minus_human" in out:
        w = out["weak_minus_human"]
        holm_p = "" if w.get("p_holm") is None else f" (Holm-adjusted p = {w['p_holm']})"
        pgr_floor = (f"; the performance gap recovered against the floor, (weak − random) / (human − random): "
                     f"{_ratio(out['pgr_random'])}" if "pgr_random" in out else "")
        lines.append(f"Weak minus human, paired by seed: {cell(w)}{holm_p}{pgr_floor}. {_equivalence_sentence(out)}")
    else:
        lines.append("The study's sources lack `weak` or `human`, so there is no weak-vs-human contrast.")
    if (out.get("accuracy_to_match_human") or {}).get("mean") is not None:
        lines.append(f"To do as well as the human labels, gold labels with random errors would need an accuracy of "
                     f"{cell(out['accuracy_to_match_human']).replace('+', '')} (the human labels' own: "
                     f"{s['human']['label_accuracy']}; the weak labels': {s['weak']['label_accuracy']})"
                     + ("; an interval reaching past 1.0, the most accurate labels can be, means the seeds do not "
                        "bound it yet." if (out["accuracy_to_match_human"].get("hi") or 0) > 1 else "."))
    c = out["checks"]
    lines += ["Calibration: " + "; ".join(f"{check_label(k)}: {check_verdict(v)}" for k, v in c.items()) + ". "
              + checks_verdict(c),
              f"What it does not show: this is one target model ({out.get('model')}) on one task (gold judge "
              f"{out.get('judge')}); a seed redraws data and training but not the model or the task, so "
              "nothing here transfers to other models, judges or data without running the study there. "
              + machine_sentence(out)]
    return "\n\n".join(lines)


def _not_a_number(key: str, value) -> bool:
    return not (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)))


def metrics_split(out: dict) -> tuple[dict, dict]:
    """The analysis as DVC metrics: numbers and nulls to metrics/study.json (what `dvc metrics show/diff` compares;
    a check is 1 where it holds, 0 where it fails, null where it cannot be measured yet), everything else (model
    and judge names, seeds, machines, commits, verdict flags) to its .info.json beside it."""
    checks = {k: None if v is None else int(v) for k, v in out.get("checks", {}).items()}
    return split_metrics(out | ({"checks": checks} if "checks" in out else {}), _not_a_number)


def readme_block(out: dict, report: str) -> str:
    """The README's short form of the answer: each arm against the floor in one table, weak minus human with its
    recovered fraction, and the checks' tally. The sentences that explain them live in the report (`answer`),
    linked here rather than copied, so the README's first screen stays short."""
    s, n = out["sources"], out["n_seeds"]
    if not n or "random" not in s:
        return answer(out)
    arms = [name for name in table_order(list(s)) if (s[name].get("minus_random") or {}).get("mean") is not None]
    made = (f" of commit{'s' * (len(out['commits']) > 1)} {', '.join(out['commits'])}" if out.get("commits") else "")
    lines = [f"Over {n} seed{'s' * (n != 1)}{made}: gold reward of each target minus the target aligned on coin "
             "flips (`random`, same seed, D_u and test prompts), mean [95% t-interval over seeds]:", "",
             "| " + " | ".join(f"`{a}`" for a in arms) + " |", "|" + "---|" * len(arms),
             "| " + " | ".join(cell(s[a]["minus_random"]).replace(" (no interval)", "") for a in arms) + " |", ""]
    if "weak_minus_human" in out:
        pgr = f"; recovered fraction (weak − random) / (human − random): {_ratio(out['pgr_random'])}" \
            if "pgr_random" in out else ""
        lines += [f"Weak minus human: {cell(out['weak_minus_human'])}{pgr}.", ""]
    c = out["checks"]
    held, failed = sum(v is True for v in c.values()), sum(v is False for v in c.values())
    unknown = len(c) - held - failed
    verdict = ("every check holds" if held == len(c) else
               "no weak-vs-human claim should be read until every check holds")
    lines.append(f"Calibration checks: {held} of {len(c)} hold, {failed} fail, {unknown} cannot be measured yet: "
                 f"{verdict}. Which, why, and what the study does not show (one model, one task, one machine): "
                 f"[{report}]({report}).")
    return "\n".join(lines)


def machine_sentence(out: dict) -> str:
    """Which machines the runs ran on, from the summaries' record, and what that does to the pairing."""
    groups = out.get("machines") or []

    def name(m: dict | None) -> str:
        if m is None:
            return "a machine the summary does not record (it predates the record)"
        bf16 = {True: "native bf16", False: "no native bf16, so fp32", None: "bf16 unknown"}[m.get("native_bf16")]
        return f"{m.get('gpu') or m.get('cpu')} ({bf16}, torch {m.get('torch')})"

    if not groups or (len(groups) == 1 and groups[0]["machine"] is None):
        text = ("The run summaries do not record their machine (they predate the record); another machine "
                "computes other numbers from the same seeds.")
    elif len(groups) == 1:
        text = (f"All runs ran on {name(groups[0]['machine'])}; another machine computes other numbers from the "
                "same seeds.")
    else:
        text = ("The runs ran on " + "; ".join(f"{name(g['machine'])}: {', '.join(g['runs'])}" for g in groups)
                + ". Machines differ in their arithmetic, so a seed on one is another draw than on the other; the "
                  "intervals over seeds include that spread.")
    unpaired = out.get("unpaired_runs") or {}
    if unpaired:
        text += (f" {len(unpaired)} teacher run{'s' * (len(unpaired) != 1)} drew other data than its seed's main run "
                 f"and is left out of every paired figure ({'; '.join(f'{k}: {v}' for k, v in unpaired.items())}).")
    return text


README_BEGIN, README_END = "<!-- study:begin (written by `make study-report`) -->", "<!-- study:end -->"


def update_readme(readme: Path, text: str) -> bool:
    """Replace the README's study block (between the markers) with `text`; False where there are no markers."""
    if not readme.is_file():
        return False
    doc = readme.read_text()
    if README_BEGIN not in doc or README_END not in doc:
        return False
    head, rest = doc.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    with atomic_file(readme) as f:
        f.write(f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")
    return True


def seed_table(summaries: dict[str, dict], out: dict) -> list[str]:
    """The runs themselves: each seed's base and every arm's gain over it, a row per seed (the unit of analysis;
    the intervals above are over these rows). An unpaired teacher run shows as `n/p`."""
    names = table_order(list(out["sources"]))
    rows = ["| seed | machine | base | " + " | ".join(md(n) for n in names) + " |",
            "|---" * (len(names) + 3) + "|"]
    for seed in out["seeds"]:
        main = summaries[f"s{seed}"]
        base = main["base"]["gold_reward"]
        cells = []
        for n in names:
            run = f"s{seed}-{n.removeprefix('weak@')}" if n.startswith("weak@") else f"s{seed}"
            src = "weak" if n.startswith("weak@") else n
            g = summaries.get(run, {}).get("sources", {}).get(src, {}).get("gold_reward")
            cells.append("n/p" if run in out.get("unpaired_runs", {}) else "–" if g is None else f"{g - base:+.3f}")
        m = main.get("machine") or {}
        where = re.sub(r"\((R|TM)\)", "", str(m.get("gpu") or m.get("cpu") or "not recorded"))
        rows.append(f"| {seed} | {md(where)} | {base:.4f} | " + " | ".join(cells) + " |")
    return rows


def _source_table(out: dict) -> list[str]:
    """The report's table: a row per arm (the base first) with its accuracy, reward, contrasts, drift."""
    s = out["sources"]
    lines = ["| source | label accuracy | gold reward | gain vs base | p (Holm) | minus random [95%] | t; p (Holm) | "
              "held-out pref. accuracy | KL to start (nats) | gold per nat |",
              "|---" * 10 + "|",
              f"| base | – | {cell(out['base']['gold_reward'])} |" + " – |" * 7]

    def num(x: float | None, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    for n in table_order(list(s)):
        x = s[n]
        floor = x.get("minus_random")
        test = "–" if floor is None else f"{num(floor.get('t'), '.2f')}; {num(floor.get('p_holm'), '.3g')}"
        lines.append(f"| {md(n)} | {num(x['label_accuracy'], '.3f')} | {cell(x['gold_reward'])} | "
                     f"{cell(x['gain_vs_base'])} | {num(x['gain_vs_base'].get('p_holm'), '.3g')} | {cell(floor)} | "
                     f"{test} | {num(x.get('heldout_accuracy'), '.3f')} | {num(x['kl_estimate'], '.2f')} | "
                     f"{num(x.get('gold_per_nat'), '+.3f')} |")
    lines += ["", "Minus random: the target against the one aligned on coin flips in the same seed (the floor). Gold "
              "per nat: the mean gain over the base divided by the mean KL to the start, over seeds.", ""]
    return lines


def _weak_section(out: dict) -> list[str]:
    """The report's "Weak against human": the paired contrast, both TOSTs, the recovered fractions, each arm's
    effective accuracy and every teacher against human."""
    s = out["sources"]
    w, t, e = out["weak_minus_human"], out["tost"], out["equivalence"]
    lines = ["## Weak against human", "",
             f"- weak − human, paired by seed: {cell(w)}, p (Holm) = {w.get('p_holm')}",
             f"- equivalence (TOST, margin ±{e['margin']} = {e['margin_fraction']} × |human − random|): 90% "
             f"interval [{e['lo90']}, {e['hi90']}], p = {e['p']}: "
             f"{'equivalent' if e['equivalent'] else 'not shown equivalent'}"
             + (f" ({e['note']})" if e.get("note") else ""),
             f"- for comparison, TOST within the fixed margin ±{t['margin']} (`study.tost_margin`): 90% interval "
             f"[{t['lo90']}, {t['hi90']}], p = {t['p']}"]
    for key, what in (("pgr_random", "human over the random floor"), ("pgr", "human over the base"),
                      ("pgr_gold", "gold over the base")):
        if key in out:
            lines.append(f"- performance gap recovered against {what}: {_ratio(out[key])}")
    for n in table_order(list(s)):
        e = s[n].get("effective_accuracy")
        if e and e.get("mean") is not None:
            lines.append(f"- {md(n)}: labels {s[n]['label_accuracy']} accurate against gold, worth gold labels "
                         f"of accuracy {cell(e).replace('+', '')} (effective accuracy: where its gold reward "
                         f"meets the seed's line through random, noisy_gold_NN and gold; {e['n']} seeds)")
    for n in table_order(list(s)):
        if "minus_human" in s[n]:
            lines.append(f"- {md(n)} − human: {cell(s[n]['minus_human'])}, p (Holm) = "
                         f"{s[n]['minus_human'].get('p_holm')}")
    lines.append("")
    return lines


def markdown(out: dict, missing: list[str], stale: list[str], figure_name: str | None,
             seed_rows: list[str] = ()) -> str:
    """reports/study.md: the answer, the table of arms, the seeds, weak against human and the checks."""
    lines = ["# The study: feedback sources over seeds", "",
             f"{out['n_seeds']} seeds ({', '.join(map(str, out['seeds'])) or 'none'}); each seed is one run of the "
             "whole pipeline (holdout, sampled pairs, D_l/D_u, annotators, training). Intervals are 95% "
             "t-intervals over seeds; contrasts are paired within a seed (same test prompts); p-values are "
             "two-sided, Holm-adjusted over every contrast in this report (`p_holm`).", ""]
    lines += [answer(out), ""]
    if missing or stale:
        lines += [f"**Incomplete**: {len(missing)} planned runs missing ({', '.join(missing) or 'none'}), "
                  f"{len(stale)} stale (made with other params, or by code whose results differ or have no fingerprint "
                  f"here: {', '.join(stale) or 'none'}). `make study` measures the fingerprints and runs what "
                  "changed.", ""]
    if figure_name:
        lines += [f"![gold reward against label accuracy]({figure_name})", ""]
    lines += _source_table(out)
    if seed_rows:
        lines += ["## Per seed: gain over the base in gold reward", "", *seed_rows, ""]
    if "weak_minus_human" in out:
        lines += _weak_section(out)
    lines += ["## Is the instrument calibrated?", "",
              f"Spearman(label accuracy, gold reward): {out['dose_response_spearman']} over every arm, "
              f"{out['calibration_spearman']} over the calibration sources. Least-squares slope of gold reward on "
              f"label accuracy over the calibration sources, per seed: {cell(out['dose_response_slope'])} "
              f"({out['dose_response_slope']['n']} seeds).", ""]
    for check, ok in out["checks"].items():
        lines.append(f"- {check_label(check)}: {check_verdict(ok)}")
    lines += ["", checks_verdict(out["checks"]), ""]
    lines += ["What this does not show: seeds here redraw the data and training of one small model on one "
              "sandbox task with a lexicon judge; an interval over few seeds is wide, a non-significant contrast is "
              "not evidence of no difference (only the TOST line can support \"matches\"), and nothing here "
              "transfers to other models, judges or data without running the study there.", ""]
    return "\n".join(lines)


def report(params: Params, params_file: Path, metrics: Path | None = None, md_out: Path | None = None,
           plot_out: Path | None = None) -> dict:
    """Write the study's metrics, report (+ figure) and plot rows; default names carry the params file's label
    (metrics/study.json for ./params.yaml, metrics/study_tone.json for presets/tone.yaml)."""
    label = runs_dir(params_file).name  # default, or the preset's stem
    suffix = "" if label == "default" else f"_{label}"
    # The README's block quotes the committed report: a report written elsewhere (--out) leaves it alone.
    readme = label == "default" and md_out is None
    metrics = metrics or Path(f"metrics/study{suffix}.json")
    md_out = md_out or Path(f"reports/study{suffix}.md")
    plot_out = plot_out or Path(f"plots/study{suffix}.json")
    code, records, runs = code_digest(), fingerprint.load(), runs_dir(params_file)
    summaries, missing, stale = {}, [], []
    for run, overrides in plan(params, file_overrides(params_file)).items():
        if not (runs / f"{run}.json").is_file():
            missing.append(run)
            continue
        summary = current(runs, run, run_digest(params_file, overrides, code), overrides, code, records)
        if summary is None:
            stale.append(run)
            continue
        summaries[run] = summary
    out = analyse(params, summaries)
    # Which code made the results: summaries written before the commit was recorded carry the experiment's name,
    # whose ref still says it (while the experiment is kept).
    out["commits"] = sorted({c[:7] for c in map(commit_of, summaries.values()) if c})
    out["n_runs_missing"], out["n_runs_stale"] = len(missing), len(stale)
    fig, rows = md_out.with_suffix(".png"), plot_rows(out)
    if rows:
        figure(out, fig)
    results, info = metrics_split(out)
    write_json(metrics, results)
    write_json(info_path(metrics), info)
    write_json(plot_out, rows)
    with atomic_file(md_out) as f:
        f.write(markdown(out, missing, stale, fig.name if rows else None,
                         seed_table(summaries, out) if out["n_seeds"] else []))
    figure_link = f"\n\n![gold reward against label accuracy, over seeds]({fig.as_posix()})" if rows else ""
    if readme and update_readme(Path("README.md"), readme_block(out, md_out.as_posix()) + figure_link):
        log.info("study: README.md's study block updated")
    log.info("study: %d seeds, %d missing, %d stale runs -> %s, %s", out["n_seeds"], len(missing), len(stale),
             metrics, md_out)
    return out
