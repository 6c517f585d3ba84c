"""The study's plan and analysis on made-up run summaries whose statistics can be worked by hand."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from weakalign import preset
from weakalign.config.params import load_params
from weakalign.fingerprint import code_digest, machine
from weakalign.study import analysis, planning, plots, rendering, running

ROOT = Path(__file__).resolve().parents[1]


def _params(split=None, **study_params):
    changes = {"study": {"seeds": [0, 1, 2], "sources": ["gold", "human", "weak", "random", "flipped", "noisy_gold_20"],
                         "teachers": {}, **study_params}, **({"split": split} if split else {})}
    return load_params(ROOT / "params.yaml", changes)


def _summary(seed, base, golds, accs, run=None, digest="d", kls=None):
    return {"run": run or f"s{seed}", "seed": seed, "digest": digest, "base": {"gold_reward": base},
            "sources": {s: {"gold_reward": g, "label_accuracy": accs.get(s), "kl_estimate": (kls or {}).get(s, 1.0)}
                        for s, g in golds.items()}}


ACC = {"gold": 1.0, "human": 0.7, "weak": 0.6, "random": 0.5, "flipped": 0.0, "noisy_gold_20": 0.8}


def _golds(seed):
    # Each source's gold reward = base + a fixed gain + a seed effect shared by all arms (what pairing removes).
    gains = {"gold": 0.6, "human": 0.4, "weak": 0.3 + 0.1 * seed, "random": 0.0 + 0.05 * (seed - 1),
             "flipped": -0.5, "noisy_gold_20": 0.5}
    return {s: round(0.1 * seed + g, 6) for s, g in gains.items()}


def test_plan_sets_seed_sources_and_teachers():
    p = _params(set={"split.n_unlabeled": 100}, teachers={"dl_32": {"split.n_labeled": 32}})
    runs = planning.plan(p)
    assert list(runs) == ["s0", "s1", "s2", "s0-dl_32", "s1-dl_32", "s2-dl_32"]  # every seed's main run first
    assert runs["s1"] == {"split.n_unlabeled": 100, "align.sources": p.study.sources, "base.seed": 1}
    assert runs["s2-dl_32"] == {"split.n_unlabeled": 100, "split.n_labeled": 32, "align.sources": ["weak"],
                                "base.seed": 2}
    assert preset.flow(["a", "b"]) == "[a, b]" and preset.flow(None) == "null" and preset.flow(0.5) == "0.5"
    # Hydra's override grammar (dvc exp run -S) reads `=`, `@` and `:` as syntax: such strings go quoted.
    assert preset.flow("base@layers=8") == "'base@layers=8'" and preset.flow("embedded:smollm2") == "'embedded:smollm2'"
    assert preset.flow(["noisy_gold_10", "it's"]) == "[noisy_gold_10, 'it\\'s']"


def test_params_refuse_a_teacher_that_changes_d_u_or_the_targets():
    with pytest.raises(Exception, match="split.n_unlabeled"):
        _params(split={"n_unlabeled": None}, teachers={"dl_32": {"split.n_labeled": 32}})
    for key in ("align.dpo.beta", "judge.name", "split.n_unlabeled", "sft.enabled"):
        with pytest.raises(Exception, match=f"{key} would change more"):
            _params(teachers={"x": {key: 1}})


def test_analysis_by_hand():
    p = _params(teachers={"small": {"train_weak.model": "embedded:smollm2@layers=8"}})
    runs = {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC) for s in range(3)}
    for s in range(3):  # the small teacher: gain 0.1 on every seed, label accuracy 0.55
        runs[f"s{s}-small"] = _summary(s, 0.1 * s, {"weak": round(0.1 * s + 0.1, 6)}, {"weak": 0.55}, f"s{s}-small")
    out = analysis.analyse(p, runs)
    assert out["n_seeds"] == 3
    src = out["sources"]
    # Gains with no seed spread have a zero-width interval; weak's are 0.3, 0.4, 0.5: mean 0.4, s.d. 0.1, t(2) =
    # 4.302653: half-width 0.1 * 4.302653 / sqrt(3) = 0.248414.
    assert src["gold"]["gain_vs_base"]["mean"] == 0.6 and src["gold"]["gain_vs_base"]["lo"] == 0.6
    w = src["weak"]["gain_vs_base"]
    assert (w["mean"], w["lo"], w["hi"]) == pytest.approx((0.4, 0.4 - 0.248414, 0.4 + 0.248414), abs=1e-4)
    # weak - human = -0.1, 0, 0.1 by seed: mean 0, the same half-width; TOST with margin 0.1: t = (0 + 0.1) /
    # (0.1 / sqrt 3) = 1.732 on 2 df: one-sided p = 0.1127 > 0.05, so not shown equivalent.
    d = out["weak_minus_human"]
    assert d["mean"] == pytest.approx(0.0, abs=1e-9) and d["hi"] == pytest.approx(0.248414, abs=1e-4)
    assert out["tost"]["margin"] == 0.1 and out["tost"]["p"] == pytest.approx(0.1127, abs=1e-3)
    assert out["tost"]["equivalent"] is False
    # PGR against human: mean weak gain 0.4 / mean human gain 0.4 = 1; against gold 0.4 / 0.6.
    assert out["pgr"]["mean"] == pytest.approx(1.0) and out["pgr_gold"]["mean"] == pytest.approx(0.6667, abs=1e-4)
    # Holm: every reported contrast has p_holm >= its p, and the zero-spread gains have p 0.
    assert src["weak"]["gain_vs_base"]["p_holm"] >= src["weak"]["gain_vs_base"]["p"]
    assert src["gold"]["gain_vs_base"]["p_holm"] == 0.0
    # Dose-response: accuracy orders the gold rewards exactly except random (0.5, gain ~0) vs weak@small (0.55, 0.1).
    assert out["calibration_spearman"] == 1.0
    assert out["teacher_size"] == {"8": {"label_accuracy": 0.55, "gold_reward": src["weak@small"]["gold_reward"]}}
    assert src["weak@small"]["minus_human"]["mean"] == pytest.approx(-0.3)
    # Every check but the number of seeds and the teachers' range holds here (worked by hand in
    # test_contrasts_against_the_random_floor): weak labels 0.6 on every seed (a zero-width interval at 0.6), the
    # small teacher 0.55, so the teachers span 0.05 < 0.10.
    assert out["checks"] == {"at_least_5_seeds": False, "flipped_below_random": True, "gold_above_random": True,
                             "human_above_random_t4": True, "dose_response_slope_positive": True,
                             "calibration_spearman_at_least_0_9": True, "equivalence_margin_at_most_half_gap": True,
                             "weak_teacher_at_least_0_60": True, "teachers_span_0_10": False}
    assert src["weak"]["label_accuracy_interval"] == {"mean": 0.6, "lo": 0.6, "hi": 0.6}
    # The DVC plot's rows: the table's order, each arm's kind, and the base's gold reward for its horizontal line.
    rows = plots.plot_rows(out)
    assert [r["source"] for r in rows][:3] == ["gold", "human", "weak"] and rows[-1]["source"] == "flipped"
    assert {r["source"]: r["kind"] for r in rows}["weak@small"] == "teacher"
    assert {r["kind"] for r in rows} == {"calibration", "human", "weak", "teacher"}
    assert {r["base"] for r in rows} == {out["base"]["gold_reward"]["mean"]}


def test_contrasts_against_the_random_floor_by_hand():
    """Every arm minus the random arm of its seed, drift per nat, PGR and equivalence against the floor, and the
    dose-response slope, worked by hand on the made-up seeds of _golds (the seed effect 0.1 * seed cancels in every
    paired difference)."""
    from scipy import stats

    p = _params(teachers={"small": {"train_weak.model": "embedded:smollm2@layers=8"}})
    kls = [{"human": 0.5 * (s + 1), "random": 0.0} for s in range(3)]  # human: 0.5, 1.0, 1.5 nats; random: none
    runs = {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC, kls=kls[s]) for s in range(3)}
    for s in range(3):  # the small teacher: gain 0.1 on every seed
        runs[f"s{s}-small"] = _summary(s, 0.1 * s, {"weak": round(0.1 * s + 0.1, 6)}, {"weak": 0.55}, f"s{s}-small")
    out = analysis.analyse(p, runs)
    src = out["sources"]
    t2, t2_90, root3 = stats.t.ppf(0.975, 2), stats.t.ppf(0.95, 2), math.sqrt(3)
    # human - random by seed: 0.4 - 0.05 * (seed - 1) = 0.45, 0.40, 0.35: mean 0.4, s.d. 0.05, s.e. 0.05 / sqrt 3,
    # t = 0.4 / (0.05 / sqrt 3) = 8 sqrt 3 on 2 df.
    h = src["human"]["minus_random"]
    half = t2 * 0.05 / root3
    assert (h["mean"], h["lo"], h["hi"], h["n"]) == pytest.approx((0.4, 0.4 - half, 0.4 + half, 3), abs=1e-4)
    assert h["t"] == pytest.approx(8 * root3, abs=1e-4) and h["p"] == pytest.approx(2 * stats.t.sf(8 * root3, 2),
                                                                                     abs=1e-4)
    # flipped - random: -0.5 + 0.05, -0.5, -0.5 - 0.05: the same spread around -0.5.
    f = src["flipped"]["minus_random"]
    assert (f["mean"], f["lo"], f["hi"]) == pytest.approx((-0.5, -0.5 - half, -0.5 + half), abs=1e-4)
    # A teacher arm against its seed's random arm: 0.1 - 0.05 * (seed - 1) = 0.15, 0.10, 0.05, t = 2 sqrt 3.
    small = src["weak@small"]["minus_random"]
    assert (small["mean"], small["lo"], small["t"]) == pytest.approx((0.1, 0.1 - half, 2 * root3), abs=1e-4)
    assert "minus_random" not in src["random"]
    # They join the Holm family: adjusted p at least the raw p, and at most 1.
    assert all(x["minus_random"]["p"] <= x["minus_random"]["p_holm"] <= 1 for n, x in src.items() if n != "random")
    # Gold per nat: a ratio of means, mean gain 0.4 over mean KL (0.5 + 1.0 + 1.5) / 3 = 1.0, so 0.4 (the mean of
    # per-seed ratios would be (0.8 + 0.4 + 0.2667) / 3 = 0.489); random's KL is 0, so none.
    assert src["human"]["gold_per_nat"] == pytest.approx(0.4) and src["gold"]["gold_per_nat"] == pytest.approx(0.6)
    assert src["random"]["gold_per_nat"] is None
    # PGR against the floor: (weak - random) = 0.35, 0.40, 0.45 over (human - random) = 0.45, 0.40, 0.35: 0.4 / 0.4.
    # Fieller: g = d = 0.4, var of each mean 0.0025 / 3, covariance -0.0025 / 3; the set A rho^2 - 2 B rho + C <= 0.
    v, c = 0.0025 / 3, -0.0025 / 3
    qa, qb, qc = 0.16 - t2 ** 2 * v, 0.16 - t2 ** 2 * c, 0.16 - t2 ** 2 * v
    root = math.sqrt(qb * qb - qa * qc)
    g = out["pgr_random"]
    assert (g["mean"], g["lo"], g["hi"]) == pytest.approx((1.0, (qb - root) / qa, (qb + root) / qa), abs=1e-4)
    assert out["pgr"]["mean"] == pytest.approx(1.0)  # the old keys stay
    # Equivalence: margin 0.5 * |0.4| = 0.2; weak - human = -0.1, 0, 0.1 (mean 0, s.e. 0.1 / sqrt 3), so each
    # one-sided t is 0.2 / (0.1 / sqrt 3) = 2 sqrt 3, and the 90% interval is 0 +- t(0.95, 2) * 0.1 / sqrt 3.
    e = out["equivalence"]
    assert e["margin_fraction"] == 0.5 and e["margin"] == pytest.approx(0.2)
    assert e["p"] == pytest.approx(stats.t.sf(2 * root3, 2), abs=1e-4)
    assert (e["lo90"], e["hi90"]) == pytest.approx((-t2_90 * 0.1 / root3, t2_90 * 0.1 / root3), abs=1e-4)
    assert e["equivalent"] is True and e["note"] is None
    assert out["tost"]["margin"] == 0.1 and out["tost"]["equivalent"] is False  # the fixed margin, as before
    # Dose-response slope over gold (1.0), noisy_gold_20 (0.8), random (0.5), flipped (0.0): mean accuracy 0.575,
    # Sxx = 0.425^2 + 0.225^2 + 0.075^2 + 0.575^2 = 0.5675; with gains 0.6, 0.5, 0.05 (seed - 1), -0.5,
    # Sxy = 0.425 * 0.6 + 0.225 * 0.5 - 0.075 * 0.05 (seed - 1) + 0.575 * 0.5 = 0.655 - 0.00375 (seed - 1).
    slopes = [(0.655 - 0.00375 * (s - 1)) / 0.5675 for s in range(3)]
    half = t2 * (0.00375 / 0.5675) / root3  # the slopes' s.d. is their step
    d = out["dose_response_slope"]
    assert (d["mean"], d["lo"], d["hi"], d["n"]) == pytest.approx((sum(slopes) / 3, slopes[1] - half,
                                                                    slopes[1] + half, 3), abs=1e-4)
    rows = {row["source"]: row for row in plots.plot_rows(out)}
    assert rows["human"]["minus_random"] == 0.4 and rows["random"]["minus_random"] is None


def test_random_labels_never_pass_as_equivalent_to_human():
    """Five seeds on which human labels do no better than coin flips (human - random 0.1, -0.1, 0.05, -0.05, 0.03)
    and weak labels match human to 0.001: TOST within a margin drawn from that gap passes, but the gap's interval
    contains 0, so no equivalence is declared; flipped is no lower than random; the margin is 0.8 of the gap."""
    from scipy import stats

    p = _params(seeds=[0, 1, 2, 3, 4], equivalence_margin_fraction=0.8)
    noise = [0.1, -0.1, 0.05, -0.05, 0.03]  # human - random
    close = [0.001, -0.001, 0.0, 0.001, -0.001]  # weak - human
    flat = [0.02, -0.02, 0.01, -0.01, -0.005]  # flipped - random
    runs = {}
    for s in range(5):
        rnd = -0.05 + 0.01 * s
        golds = {"gold": rnd + 0.6, "noisy_gold_20": rnd + 0.5, "random": rnd, "flipped": rnd + flat[s],
                 "human": rnd + noise[s], "weak": rnd + noise[s] + close[s]}
        runs[f"s{s}"] = _summary(s, 0.0, {k: round(v, 6) for k, v in golds.items()}, ACC)
    out = analysis.analyse(p, runs)
    h = out["sources"]["human"]["minus_random"]
    assert h["mean"] == pytest.approx(0.006) and h["lo"] < 0 < h["hi"]
    assert h["t"] == pytest.approx(0.006 / (stats.tstd(noise) / math.sqrt(5)), abs=1e-3)
    # margin 0.8 * 0.006 = 0.0048; weak - human has mean 0 and s.d. sqrt(4e-6 / 4) = 0.001: each one-sided t is
    # 0.0048 / (0.001 / sqrt 5) on 4 df, so the TOST itself passes.
    e = out["equivalence"]
    assert e["margin"] == pytest.approx(0.0048) and e["p"] == pytest.approx(stats.t.sf(4.8 * math.sqrt(5), 4), abs=1e-4)
    assert e["p"] < 0.05 and e["equivalent"] is False and "not above 0" in e["note"]
    assert out["checks"] == {"at_least_5_seeds": True, "flipped_below_random": False, "gold_above_random": True,
                             "human_above_random_t4": False, "dose_response_slope_positive": True,
                             "calibration_spearman_at_least_0_9": True, "equivalence_margin_at_most_half_gap": False,
                             "weak_teacher_at_least_0_60": True, "teachers_span_0_10": None}
    text = rendering.answer(out)
    assert "Weak is not declared equivalent to human: human − random's interval is not above 0" in text
    assert ("This study fails 3 of its 9 checks (flipped below random, human above random with t ≥ 4, equivalence "
            "margin ≤ half the human − random gap)") in text
    md = rendering.markdown(out, [], [], None)
    assert "- human above random with t ≥ 4: NO" in md and "| minus random [95%] |" in md and "gold per nat |" in md
    # Without a random arm nothing is measured against the floor: the checks that need it are unknown, not passed.
    p = _params(sources=["human", "weak", "gold"])
    out = analysis.analyse(p, {f"s{s}": _summary(s, 0.0, {"human": 0.1, "weak": 0.1, "gold": 0.3}, ACC) for s in range(3)})
    assert out["equivalence"]["equivalent"] is False and out["equivalence"]["margin"] is None
    assert "pgr_random" not in out and "minus_random" not in out["sources"]["human"]
    assert {k for k, v in out["checks"].items() if v is None} == {
        "gold_above_random", "flipped_below_random", "human_above_random_t4", "dose_response_slope_positive",
        "calibration_spearman_at_least_0_9", "equivalence_margin_at_most_half_gap", "teachers_span_0_10"}
    assert "cannot measure 7 yet" in rendering.answer(out)


def test_the_equivalence_margin_fraction_lies_in_0_to_1():
    assert _params(equivalence_margin_fraction=1).study.equivalence_margin_fraction == 1.0
    assert load_params(ROOT / "params.yaml").study.equivalence_margin_fraction == 0.5
    for bad in (0, -0.1, 1.01, float("nan")):
        with pytest.raises(Exception, match="equivalence_margin_fraction"):
            _params(equivalence_margin_fraction=bad)


def test_a_teacher_run_that_drew_other_data_is_left_out_of_the_paired_figures():
    # Measured on 2026-12-02: a teacher run of seed 0 on a machine with native bf16 sampled other pairs than seed
    # 0's main run on an AVX2 machine (fp32), so its base scored 0.1414 against 0.1586 and its D_u md5 differed.
    p = _params(teachers={"small": {"train_weak.model": "embedded:smollm2@layers=8"}})
    runs = {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC) for s in range(3)}
    for s in range(3):
        runs[f"s{s}-small"] = _summary(s, 0.1 * s, {"weak": round(0.1 * s + 0.1, 6)}, {"weak": 0.55}, f"s{s}-small")
    runs["s0"]["data"] = {"data/pairs.jsonl": "aa" * 16, "data/split/unlabeled.jsonl": "bb" * 16}
    runs["s0-small"]["data"] = {"data/pairs.jsonl": "aa" * 16, "data/split/unlabeled.jsonl": "cc" * 16}
    runs["s1-small"]["base"]["gold_reward"] = 0.1414  # the main run's base: 0.1
    runs["s2-small"]["data"] = {"data/pairs.jsonl": "aa" * 16}  # s2 records no hashes: the base decides
    out = analysis.analyse(p, runs)
    assert set(out["unpaired_runs"]) == {"s0-small", "s1-small"}
    assert out["unpaired_runs"]["s0-small"] == "data/split/unlabeled.jsonl md5 cccccccc against bbbbbbbb in s0"
    assert out["unpaired_runs"]["s1-small"] == "base gold reward 0.1414 against 0.1 in s1"
    small = out["sources"]["weak@small"]
    assert small["gain_vs_base"]["n"] == 1 and small["minus_human"]["n"] == 1  # seed 2 only
    assert small["minus_human"]["mean"] == pytest.approx(-0.3)
    text = rendering.machine_sentence(out)
    assert "do not record their machine" in text and "2 teacher runs drew other data" in text and "s1-small" in text
    # Two machines: both named with the runs each ran.
    runs["s0"]["machine"] = {"cpu": "AMD EPYC", "gpu": None, "native_bf16": False, "torch": "2.13.0"}
    text = rendering.machine_sentence(analysis.analyse(p, runs))
    assert "AMD EPYC (no native bf16, so fp32, torch 2.13.0): s0;" in text and "predates the record" in text


def test_data_hashes_come_from_the_experiments_dvc_lock(monkeypatch):
    lock = {"schema": "2.0", "stages": {
        "generate_pairs": {"outs": [{"path": "data/pairs.jsonl", "md5": "p" * 32}]},
        "split": {"outs": [{"path": "data/split/labeled.jsonl", "md5": "l" * 32},
                           {"path": "data/split/unlabeled.jsonl", "md5": "u" * 32}]}}}
    monkeypatch.setattr(running, "_git", lambda *args: json.dumps(lock) if args[1].endswith(":dvc.lock") else "")
    assert running.data_hashes("refs/exps/x") == {"data/pairs.jsonl": "p" * 32, "data/split/unlabeled.jsonl": "u" * 32}
    m = machine()
    assert set(m) == {"cpu", "gpu", "native_bf16", "torch"} and m["cpu"] and m["torch"]


def test_report_reads_only_current_summaries_and_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("study:\n  seeds: [0, 1]\n  sources: [human, weak, random]\n  teachers: {}\n")
    p = _params(seeds=[0, 1], sources=["human", "weak", "random"])
    (tmp_path / "src/weakalign").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    code = code_digest()
    runs = planning.plan(p)
    runs_dir = planning.runs_dir(tmp_path / "params.yaml")
    assert runs_dir == planning.RUNS / "default"
    runs_dir.mkdir(parents=True)
    golds = {"human": 0.5, "weak": 0.4, "random": 0.1}
    good = _summary(0, 0.1, golds, {"human": 0.7, "weak": 0.6, "random": 0.5},
                    digest=planning.run_digest(tmp_path / "params.yaml", runs["s0"], code))
    (runs_dir / "s0.json").write_text(json.dumps(good))
    (runs_dir / "s1.json").write_text(json.dumps(_summary(1, 0.1, golds, {}, digest="old")))
    out = rendering.report(p, tmp_path / "params.yaml", tmp_path / "m.json", tmp_path / "r.md", tmp_path / "p.json")
    assert out["n_seeds"] == 1 and out["n_runs_stale"] == 1 and out["n_runs_missing"] == 0
    text = (tmp_path / "r.md").read_text()
    assert "1 stale" in text and "![gold reward against label accuracy](r.png)" in text
    # The runs themselves, a row per seed: the base and each arm's gain over it (0.5 - 0.1, 0.4 - 0.1, 0.1 - 0.1).
    assert "| 0 | not recorded | 0.1000 | +0.400 | +0.300 | +0.000 |" in text
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert [row["source"] for row in json.loads((tmp_path / "p.json").read_text())] == ["human", "weak", "random"]
    # A code change makes every summary stale.
    (tmp_path / "stages/x.py").write_text("# new stage\n")
    assert rendering.report(p, tmp_path / "params.yaml", tmp_path / "m.json", tmp_path / "r.md",
                        tmp_path / "p.json")["n_runs_stale"] == 2


def test_a_preset_study_sets_what_the_preset_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("judge: {name: vader}\ndata: {path: a.jsonl, source: sandbox}\n")
    preset = tmp_path / "tone.yaml"
    preset.write_text("judge: {name: tone}\ndata: {path: b.jsonl, source: sandbox}\nstudy: {seeds: [0]}\n")
    assert planning.file_overrides(preset) == {"judge.name": "tone", "data.path": "b.jsonl"}
    assert planning.file_overrides(tmp_path / "params.yaml") == {}
    assert planning.runs_dir(preset) == planning.RUNS / "tone"
    p = _params(seeds=[0], sources=["human", "weak"])
    assert planning.plan(p, planning.file_overrides(preset))["s0"]["judge.name"] == "tone"


def test_headline_quotes_the_analysis_and_the_readme_block_is_replaced(tmp_path):
    p = _params()
    runs = {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC) for s in range(3)}
    out = analysis.analyse(p, runs)
    text = rendering.answer(out)
    assert "Over 3 seeds" in text and rendering.cell(out["sources"]["random"]["gain_vs_base"]) in text
    assert rendering.cell(out["weak_minus_human"]) in text
    assert "flipped below random: yes" in text and "human above random with t ≥ 4: yes" in text
    assert ("This study fails 1 of its 9 checks (at least 5 seeds) and cannot measure 1 yet (the teachers' label "
            "accuracies span ≥ 0.10): until every check holds") in text
    # Each arm against the floor, and PGR against the floor (worked by hand in test_contrasts_against_the_random_floor).
    for name in ("gold", "human", "weak", "flipped", "noisy_gold_20"):
        assert f"`{name}` {rendering._with_t(out['sources'][name]['minus_random'])}" in text
    assert "(weak − random) / (human − random): 1.00 [" in text
    assert "Equivalence within ±0.2 (0.5 of the human − random gap) is shown" in text
    assert "would need an accuracy of" in text and "past 1.0" not in text
    out["accuracy_to_match_human"] = out["accuracy_to_match_human"] | {"hi": 1.069}  # an impossible upper end is said so
    assert "an interval reaching past 1.0, the most accurate labels can be, means the seeds do not bound it yet" \
        in rendering.answer(out)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{rendering.README_BEGIN}\nold\n{rendering.README_END}\nrest\n")
    assert rendering.update_readme(readme, text)
    assert readme.read_text() == f"# x\n{rendering.README_BEGIN}\n{text}\n{rendering.README_END}\nrest\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not rendering.update_readme(tmp_path / "plain.md", text)
    assert "no finished seed" in rendering.answer(analysis.analyse(p, {}))


def test_the_readme_block_is_short_and_quotes_the_analysis():
    """The README's block: each arm against the floor in one table, weak minus human with its recovered fraction,
    the checks' tally, and the report's link for the sentences; every number the analysis's own (`_cell`)."""
    p = _params()
    out = analysis.analyse(p, {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC) for s in range(3)})
    text = rendering.readme_block(out, "reports/study.md")
    assert text.startswith("Over 3 seeds") and len(text.split()) <= 150, len(text.split())
    for name in ("gold", "human", "weak", "flipped", "noisy_gold_20"):
        assert f"`{name}`" in text and rendering.cell(out["sources"][name]["minus_random"]) in text
    assert f"Weak minus human: {rendering.cell(out['weak_minus_human'])}" in text
    assert "(weak − random) / (human − random): 1.00 [" in text
    assert "Calibration checks: 7 of 9 hold, 1 fail, 1 cannot be measured yet: no weak-vs-human claim" in text
    assert "[reports/study.md](reports/study.md)" in text
    assert "no finished seed" in rendering.readme_block(analysis.analyse(p, {}), "reports/study.md")


def _git_repo(tmp_path, monkeypatch, files: dict[str, str]) -> str:
    """A git repository in tmp_path (made the working directory) with `files` committed; returns the commit."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_a_study_refuses_to_queue_over_uncommitted_pipeline_changes(tmp_path, monkeypatch):
    # Queued experiments run HEAD; a digest of an edited workspace would label their results with the wrong code.
    _git_repo(tmp_path, monkeypatch, {"stages/a.py": "x = 1\n", "README.md": "doc\n"})
    assert running._uncommitted(Path("params.yaml")) == []
    (tmp_path / "README.md").write_text("docs may change while a study runs\n")
    assert running._uncommitted(Path("params.yaml")) == []
    (tmp_path / "stages/a.py").write_text("x = 2\n")
    assert running._uncommitted(Path("params.yaml")) == ["stages/a.py"]
    assert running._uncommitted(Path("/elsewhere/params.yaml")) == ["stages/a.py"]


def test_a_summary_made_from_another_prompt_file_is_stale(tmp_path, monkeypatch):
    # The prompt file (`data.path`) decides a run's result as the code does: a summary that records its md5 is
    # stale once the file changes; one older than that record is judged by git, the file at the run's commit.
    commit = _git_repo(tmp_path, monkeypatch, {"data/p.jsonl": '{"prompt": "a"}\n',
                                                "params.yaml": "data:\n  path: data/p.jsonl\nstudy: {}\n"})
    runs = tmp_path / "runs"
    runs.mkdir()
    now = planning.input_file({})
    assert now == {"path": "data/p.jsonl", "md5": "a0e8e6d9ce7693311c0a61857e0482a4"}
    (runs / "s0.json").write_text(json.dumps({"digest": "d", "input": now}))
    (runs / "s1.json").write_text(json.dumps({"digest": "d", "commit": commit}))  # before the record
    assert planning.current(runs, "s0", "d", {}) and planning.current(runs, "s1", "d", {})
    assert planning.current(runs, "s0", "other", {}) is None
    assert running._uncommitted(Path("params.yaml"), ["data/p.jsonl"]) == []
    (tmp_path / "data/p.jsonl").write_text('{"prompt": "b"}\n')
    assert planning.current(runs, "s0", "d", {}) is None and planning.current(runs, "s1", "d", {}) is None
    assert running._uncommitted(Path("params.yaml"), ["data/p.jsonl"]) == ["data/p.jsonl"]
    assert planning.current(runs, "s0", "d") is not None  # without the run's params there is nothing to compare


def test_effective_accuracy_inverts_each_seeds_calibration_line():
    # Seed 0: calibration points on gold = 2 * acc - 1 exactly (random 0.5 -> 0, noisy_gold_20 0.8 -> 0.6, gold 1 -> 1);
    # human at 0.4 gold reward sits at accuracy 0.7. Seed 1: a flat line cannot be inverted, so no value.
    arms = {"gold": [1.0, 0.3], "noisy_gold_20": [0.6, 0.3], "random": [0.0, 0.3], "flipped": [-9.0, -9.0],
            "human": [0.4, 0.3]}
    acc = {"gold": [1.0, 1.0], "noisy_gold_20": [0.8, 0.8], "random": [0.5, 0.5], "flipped": [0.0, 0.0],
           "human": [0.72, 0.7]}
    eff = analysis.effective_accuracies(arms, acc)
    assert set(eff) == {"human"}  # calibration arms are the scale, not points on it
    assert eff["human"][0] == pytest.approx(0.7) and eff["human"][1] is None  # flipped (-9) left out of the fit
    assert analysis.noise_line([(0.5, 0.0), (1.0, 1.0)]) is None  # two points: no line claimed


def test_a_task_left_running_by_a_killed_study_is_marked_failed_and_queued_again(tmp_path, monkeypatch):
    """A study killed mid-run leaves its task "Running" in DVC's queue with no worker: DVC would never run it
    again, so the next `study run` must see it as failed (and queue it afresh), while a task a live worker runs
    stays untouched; tasks of other experiments are not the study's."""
    calls = tmp_path / "calls"
    fake = tmp_path / "dvc"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    listed = [("study-s0-60177624", "Running"), ("study-s1-da5586ca", "Queued"), ("mine", "Queued")]

    monkeypatch.setattr(running, "_queue_status", lambda: (listed, True))
    assert running._queued(str(fake)) == {"study-s0-60177624": "Running", "study-s1-da5586ca": "Queued"}
    assert not calls.exists()
    monkeypatch.setattr(running, "_queue_status", lambda: (listed, False))
    assert running._queued(str(fake)) == {"study-s0-60177624": "Failed", "study-s1-da5586ca": "Queued"}
    assert calls.read_text() == "queue kill study-s0-60177624\n"


def test_the_queue_is_read_through_dvcs_python_api(tmp_path, monkeypatch):
    """`_queue_status` against a real DVC repository: two experiments queued by the command the study uses come
    back by name, oldest first, as Queued, with no worker active; none once they are removed."""
    _git_repo(tmp_path, monkeypatch, {"params.yaml": "x: 1\n", ".gitignore": "out.txt\n",
                                      "dvc.yaml": "stages:\n  s:\n    cmd: echo x > out.txt\n    params: [x]\n"
                                                  "    outs: [out.txt]\n"})
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "dvc"], check=True)
    for name, x in (("study-a", 2), ("study-b", 3)):
        subprocess.run([*dvc, "exp", "run", "--queue", "-n", name, "-S", f"x={x}"], check=True, capture_output=True)
    assert running._queue_status() == ([("study-a", "Queued"), ("study-b", "Queued")], False)
    subprocess.run([*dvc, "queue", "remove", "study-a", "study-b"], check=True, capture_output=True)
    assert running._queue_status() == ([], False)


def test_the_queue_is_put_back_in_plan_order():
    """DVC runs queued tasks oldest first. A run whose task died goes back to its place in the plan, and the tasks
    waiting behind that place are queued again after it; a queue already in plan order is left alone."""
    want = ["s1", "s3", "s4", "s0-layers_8"]
    # 2026-12-02: s1's dead task was requeued behind the teacher runs, s3's died next.
    queued = {"s4": "Queued", "s0-layers_8": "Queued", "s1": "Queued", "s3": "Failed", "s0": "Success"}
    assert running.queue_order(want, queued) == (["s1", "s3", "s4", "s0-layers_8"], want)
    in_order = {"s2": "Running", "s1": "Queued", "s3": "Queued", "s4": "Queued", "s0-layers_8": "Queued"}
    assert running.queue_order(want, in_order) == ([], [])
    # Only the tail after the first run out of place is queued again; a never-queued run is only added.
    tail = {"s1": "Queued", "s3": "Queued", "s0-layers_8": "Queued"}
    assert running.queue_order(want, tail) == (["s0-layers_8"], ["s4", "s0-layers_8"])
    assert running.queue_order(want, {}) == ([], want)


def test_only_the_committed_report_rewrites_the_readme_block(tmp_path, monkeypatch):
    """`study report` with its default outputs refreshes the README's block; a report written elsewhere (--out,
    e.g. a scratch look) leaves it alone, so the README never points at a figure outside the repository."""
    import shutil

    from weakalign.config.params import load_params

    root = Path(__file__).resolve().parents[1]
    for rel in ("params.yaml", "dvc.yaml"):
        shutil.copy(root / rel, tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{rendering.README_BEGIN}\nold\n{rendering.README_END}\n")
    params = load_params("params.yaml")
    rendering.report(params, Path("params.yaml"), metrics=tmp_path / "s.json", md_out=tmp_path / "scratch/s.md",
                 plot_out=tmp_path / "s-plot.json")
    assert "old" in readme.read_text() and (tmp_path / "scratch/s.md").is_file()
    rendering.report(params, Path("params.yaml"))
    assert "old" not in readme.read_text() and "no finished seed" in readme.read_text()


def test_a_dead_queue_worker_is_seen_from_its_pid_file(tmp_path):
    """On 2026-12-02 DVC's queue worker died (kombu's file broker read a half-written message) while `dvc exp run
    --run-all` kept waiting, so the study would have hung; the study now checks the workers' pid files."""
    import os
    import subprocess
    import sys
    import time

    assert not running._queue_worker_gone(tmp_path)  # no pid file yet: not known to be gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "dvc-exp-worker-1.pid").write_text(str(dead.pid))
    assert running._queue_worker_gone(tmp_path)
    (tmp_path / "dvc-exp-worker-2.pid").write_text(str(os.getpid()))
    assert not running._queue_worker_gone(tmp_path)  # one live worker is enough
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, never reaped while we look
    time.sleep(1.0)
    (tmp_path / "dvc-exp-worker-2.pid").write_text(str(zombie.pid))
    if Path(f"/proc/{zombie.pid}/stat").is_file():  # Linux: a zombie answers kill(0) but is dead
        assert running._queue_worker_gone(tmp_path)
    zombie.wait()


def _fake_dvc(tmp_path, run_all: str):
    """A `dvc` that logs its arguments to tmp_path/calls and runs the shell lines `run_all` for `exp run --run-all`."""
    fake, calls = tmp_path / "dvc", tmp_path / "calls"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nif [ "$1 $2 $3" = "exp run --run-all" ]; then\n{run_all}fi\n')
    fake.chmod(0o755)
    return fake, calls


def _stub_run_all(monkeypatch, tmp_path, runs, **more):
    """run_all's collaborators stubbed: the plan `runs`, a clean checkout, no fingerprint, nothing current yet;
    `more` replaces any of them."""
    stubs = {"plan": lambda p, o: runs, "file_overrides": lambda f: {}, "runs_dir": lambda f: tmp_path / "runs",
             "_uncommitted": lambda f, i=(): [], "input_file": lambda o: None, "code_digest": lambda: "c",
             "run_digest": lambda f, o, c: "d" * 12, "_fingerprints": lambda *a: None,
             "params_digest": lambda o: "p" * 12, "current": lambda d, r, g, o=None, c=None, rec=None: None,
             "check_runs": lambda t: None, "_queued": lambda *a, **k: {}}
    for name, value in (stubs | more).items():
        monkeypatch.setattr(running, name, value)


def test_the_study_starts_the_queue_again_when_its_worker_dies(tmp_path, monkeypatch):
    """`dvc exp run --run-all` that waits on a dead worker is stopped and started again; the run then finishes."""
    import sys

    monkeypatch.chdir(tmp_path)
    # The first `exp run --run-all` hangs (its worker died); the second finishes the experiment.
    hang = f'exec {sys.executable} -c "import time; time.sleep(600)"\n'
    fake, calls = _fake_dvc(tmp_path, f"  if [ -f {tmp_path}/started ]; then touch {tmp_path}/finished; exit 0; fi\n"
                                      f"  touch {tmp_path}/started; {hang}")
    _stub_run_all(monkeypatch, tmp_path, {"s0": {"align.sources": ["human"], "base.seed": 0}},
                  exp_ref=lambda n: "refs/exps/x" if (tmp_path / "finished").exists() else None,
                  summarise=lambda ref, run, o, d: {"run": run},
                  # the hanging run's worker is dead; the restarted run's is alive
                  _queue_worker_gone=lambda: calls.read_text().count("exp run --run-all") == 1,
                  WORKER_GONE_CHECKS=10)
    real_sleep = running.time.sleep
    monkeypatch.setattr(running.time, "sleep", lambda s: real_sleep(0.05))  # 10 checks: half a second, not 3 min
    assert running.run_all(None, Path("params.yaml"), None, False, str(fake), 1) == 0
    assert json.loads((tmp_path / "runs/s0.json").read_text()) == {"run": "s0", "input": None, "code": "c",
                                                                   "params_digest": "p" * 12}
    assert calls.read_text().count("exp run --run-all") == 2


def test_point_labels_of_crowded_arms_neither_overlap_nor_sit_nearer_another_point():
    """Three arms within 0.03 of each other (the weak teachers of the committed study), two more at about 0.7 and
    gold at the right edge: every name gets a box of its own inside the axes, and a name without a leader line is
    nearest its own point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    points = [("weak", 0.542, 0.208), ("weak@dl_16", 0.523, 0.232), ("weak@layers_8", 0.548, 0.216),
              ("noisy_gold_30", 0.701, 0.209), ("human", 0.708, 0.183), ("random", 0.521, 0.151),
              ("gold", 1.0, 0.297)]  # at the right edge: its name must go to the left
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.plot([p[1] for p in points], [p[2] for p in points], "o")
    ax.set_xlim(-0.05, 1.05)  # the committed figure's scales: flipped at 0, gold at 1, rewards -0.05 to 0.38
    ax.set_ylim(-0.05, 0.38)
    plots._label_points(ax, points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == {p[0] for p in points}
    boxes = {n: Text.get_window_extent(t, renderer) for n, t in labels.items()}  # the text, not its leader line
    names = list(boxes)
    assert not any(boxes[a].overlaps(boxes[b]) for i, a in enumerate(names) for b in names[i + 1:])
    assert all(ax.bbox.x0 <= b.x0 and b.x1 <= ax.bbox.x1 for b in boxes.values()), "a name runs off the axes"
    pixels = {n: ax.transData.transform((x, y)) for n, x, y in points}
    for n, t in labels.items():
        if t.arrow_patch is None:  # no leader line: position alone must say whose label it is
            assert all(plots.box_gap(boxes[n], pixels[n]) < plots.box_gap(boxes[n], q)
                       for m, q in pixels.items() if m != n), n
    plt.close(fig)


def test_the_studys_commits_wait_for_a_held_index_lock_and_skip_unchanged_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], check=True)
    for k, v in (("user.name", "t"), ("user.email", "t@t")):
        subprocess.run(["git", "config", k, v], check=True)
    (tmp_path / "a.json").write_text("{}\n")
    subprocess.run([*git, "add", "a.json"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    lock = tmp_path / ".git/index.lock"
    lock.write_text("")
    (tmp_path / "a.json").write_text('{"x": 1}\n')
    monkeypatch.setattr(running.time, "sleep", lambda s: lock.unlink(missing_ok=True))  # someone's git finishes
    running._git_commit(["a.json"], "study: run s0")
    log = subprocess.run(["git", "log", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert log.splitlines() == ["study: run s0", "one"]
    running._git_commit(["a.json"], "study: run s0 again")  # unchanged: no empty commit, no error
    assert subprocess.run(["git", "rev-list", "--count", "HEAD"], capture_output=True, text=True).stdout.strip() == "2"
    lock.write_text("")
    monkeypatch.setattr(running.time, "sleep", lambda s: None)
    (tmp_path / "a.json").write_text('{"x": 2}\n')
    with pytest.raises(RuntimeError, match="could not commit a.json"):
        running._git_commit(["a.json"], "study: run s1", tries=3)


def test_an_edit_while_the_study_queues_stops_it_before_the_next_task(tmp_path, monkeypatch):
    """A queued experiment copies the working tree, uncommitted edits included: an edit made after the study's
    start (during its minutes-long fingerprint, or before a dead worker's runs are queued again) must stop the
    queueing, or runs would record code they did not run."""
    monkeypatch.chdir(tmp_path)
    fake = tmp_path / "dvc"
    calls = tmp_path / "calls"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    dirty: list[str] = []

    def fingerprints(*a):
        dirty.append("src/weakalign/training/dpo.py")  # edited while the fingerprint was being measured

    runs = {f"s{i}": {"align.sources": ["human"], "base.seed": i} for i in range(2)}
    for name, value in {"plan": lambda p, o: runs, "file_overrides": lambda f: {},
                        "runs_dir": lambda f: tmp_path / "runs", "_uncommitted": lambda f, i=(): list(dirty),
                        "input_file": lambda o: None, "code_digest": lambda: "c", "run_digest": lambda f, o, c: "d" * 12,
                        "_fingerprints": fingerprints, "params_digest": lambda o: "p" * 12,
                        "current": lambda d, r, g, o=None, c=None, rec=None: None, "check_runs": lambda t: None,
                        "_queued": lambda *a, **k: {}, "exp_ref": lambda n: None}.items():
        monkeypatch.setattr(running, name, value)
    with pytest.raises(ValueError, match="uncommitted changes to src/weakalign/training/dpo.py: a queued experiment"):
        running.run_all(None, Path("params.yaml"), None, False, str(fake), 1)
    assert not calls.exists()  # nothing was queued
    # A commit of other code in the same window: the digest moved, equally refused.
    dirty.clear()
    digests = iter(["c", "c2", "c2"])
    monkeypatch.setattr(running, "code_digest", lambda: next(digests))
    monkeypatch.setattr(running, "_fingerprints", lambda *a: None)
    with pytest.raises(ValueError, match="code changed from c to c2"):
        running.run_all(None, Path("params.yaml"), None, False, str(fake), 1)
    assert not calls.exists()


def test_the_weak_teacher_checks_read_accuracy_over_seeds_and_the_teachers_range():
    """Weak labels 0.62, 0.58, 0.66 over three seeds: mean 0.62, s.d. 0.04, t(2) half-width 0.04 * 4.302653 /
    sqrt 3 = 0.099364, so lo = 0.5206 < 0.55: the mean passes 0.60 but the interval does not. A teacher at 0.50
    beside them spans 0.12 >= 0.10."""
    p = _params(teachers={"small": {"split.n_labeled": 16, "split.labeled_fraction": None}})
    weak_acc = [0.62, 0.58, 0.66]
    runs = {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC | {"weak": weak_acc[s]}) for s in range(3)}
    for s in range(3):
        runs[f"s{s}-small"] = _summary(s, 0.1 * s, {"weak": 0.1 * s}, {"weak": 0.5}, f"s{s}-small")
    out = analysis.analyse(p, runs)
    w = out["sources"]["weak"]["label_accuracy_interval"]
    assert (w["mean"], w["lo"], w["hi"]) == pytest.approx((0.62, 0.62 - 0.099364, 0.62 + 0.099364), abs=1e-4)
    assert out["checks"]["weak_teacher_at_least_0_60"] is False and out["checks"]["teachers_span_0_10"] is True
    assert "weak teacher's label accuracy ≥ 0.60 (95% interval above 0.55): NO" in rendering.markdown(out, [], [], None)


def test_the_study_metrics_hold_numbers_only_and_the_rest_beside_them():
    """metrics/study.json is what `dvc metrics show` and `dvc metrics diff` read: numbers and nulls only (a check
    as 1, 0 or null); names, seeds, machines and verdict flags go to study.info.json, and merged they are the
    analysis again."""
    from weakalign.records.io import _merge

    out = analysis.analyse(_params(), {f"s{s}": _summary(s, 0.1 * s, _golds(s), ACC) for s in range(3)})
    out |= {"model": "embedded:smollm2", "seeds": [0, 1, 2]}
    results, info = rendering.metrics_split(out)

    def numbers(d):
        return all(numbers(v) if isinstance(v, dict) else v is None or type(v) in (int, float) for v in d.values())

    assert numbers(results) and set(results["checks"].values()) <= {0, 1, None}
    assert info["model"] == "embedded:smollm2" and info["seeds"] == [0, 1, 2]
    checks = {k: None if v is None else bool(v) for k, v in results["checks"].items()}
    assert checks == out["checks"]
    merged = _merge(results, info)
    merged["checks"] = checks
    assert merged == out


def test_shards_split_the_plan_by_whole_seeds():
    """Three seeds with one teacher over two machines: seeds 0 and 2 (with their teacher runs) on shard 1, seed 1 on
    shard 2; the shards are disjoint and together the plan; a bad spec names the flag."""
    p = _params(teachers={"small": {"split.n_labeled": 16, "split.labeled_fraction": None}})
    runs = planning.plan(p)
    one, two = planning.shard(runs, "1/2"), planning.shard(runs, "2/2")
    assert list(one) == ["s0", "s2", "s0-small", "s2-small"] and list(two) == ["s1", "s1-small"]
    assert planning.shard(runs, None) == runs == one | two
    assert planning.shard(runs, "1/1") == runs and planning.shard(runs, "4/4") == {}
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(ValueError, match=r"--shard .*expected I/N"):
            planning.shard(runs, bad)


def test_every_planned_run_is_checked_before_anything_is_queued(tmp_path, monkeypatch):
    """check_runs validates each run's params as the run would see them: a typo in a study override fails naming
    the run and the key, before DVC queues anything."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    planning.check_runs({"s0": {"base.seed": 0, "align.sources": ["human"]}})  # valid: no error
    with pytest.raises(ValueError, match=r"(?s)study run s1.*split\.n_labled: unknown key"):
        planning.check_runs({"s1": {"base.seed": 1, "split.n_labled": 8}})


def test_the_study_stops_waiting_once_every_run_has_its_summary(tmp_path, monkeypatch):
    """A queue worker left idle after the last task keeps `dvc exp run --run-all` waiting for ever (seen with two
    workers): once every run's summary is written the study stops it and the idle workers, and ends."""
    monkeypatch.chdir(tmp_path)
    hang = f'exec {sys.executable} -c "import time; time.sleep(600)"\n'
    fake, calls = _fake_dvc(tmp_path, f"  touch {tmp_path}/finished; {hang}")
    _stub_run_all(monkeypatch, tmp_path, {"s0": {"align.sources": ["human"], "base.seed": 0}},
                  summarise=lambda ref, run, o, d: {"run": run}, _queue_worker_gone=lambda: False,
                  exp_ref=lambda n: "refs/exps/x" if (tmp_path / "finished").exists() else None)
    real_sleep = running.time.sleep
    monkeypatch.setattr(running.time, "sleep", lambda s: real_sleep(0.2))
    assert running.run_all(None, Path("params.yaml"), None, False, str(fake), 2) == 0
    assert (tmp_path / "runs/s0.json").is_file()
    assert calls.read_text().splitlines()[-1] == "queue stop"  # the idle workers, after --run-all was stopped
