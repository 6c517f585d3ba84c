"""`python -m weakalign.aggregate`: sweep experiments grouped by params except the seed, mean ± t-based 95% CI.

The fixture (tests/fixtures/aggregate/exp_show.json) has the shape of DVC 3.x `dvc exp show --json`: a workspace
entry (never counted), a baseline commit `main`, and under it labeled fractions 0.25 and 0.5 with seeds 0-2, one
run at 0.75, one queued and one failed experiment (whose metrics are stale ones, as DVC reports them).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weakalign.aggregate import AggregateError, aggregate, collect, main, markdown, over_runs, rows

FIXTURE = Path(__file__).parent / "fixtures" / "aggregate" / "exp_show.json"
# t_{0.975} for 1 and 2 degrees of freedom from their closed forms: tan(0.475 pi) and 0.95 / sqrt(2 * 0.975 * 0.025).
T1 = math.tan(0.475 * math.pi)
T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
AGREE = "metrics/feedback.json:agreement_weak_human"
GOLD = "metrics/alignment.json:weak.gold_reward_mean"
WIN = "metrics/alignment.json:weak_vs_human_win_rate"


def _load() -> list:
    return json.loads(FIXTURE.read_text())


def _configs(data=None, seed_key="base.seed", patterns=None, include_baselines=False):
    runs, _ = collect(_load() if data is None else data, include_baselines)
    return aggregate(runs, seed_key, patterns)


def _by_fraction(configs) -> dict:
    return {c["params"]["split.labeled_fraction"]: c for c in configs}


def _sd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_collect_counts_experiments_and_skips_workspace_queued_and_failed():
    runs, skipped = collect(_load())
    assert [r.name for r in runs] == ["lf25-s0", "lf25-s1", "lf25-s2", "lf50-s0", "lf50-s1", "lf50-s2", "lf75-s0"]
    assert skipped == [("wip_<b>lf75</b>|s1", "queued"), ("lf50-s3", "failed")]
    assert runs[0].params["split.labeled_fraction"] == 0.25 and runs[0].params["align.sources"] == ["human", "weak"]


def test_metrics_are_flattened_numeric_only():
    runs, _ = collect(_load())
    assert runs[0].metrics == {AGREE: 0.55, "metrics/feedback.json:n_disagree": 47,
                               "metrics/align/weak.json:final_loss": 0.1, GOLD: 0.5, WIN: 0.4}
    assert WIN not in runs[1].metrics  # null: missing for that run, not zero


def test_grouping_ignores_the_seed_and_shows_only_varying_params():
    varying, metrics, configs = _configs()
    assert varying == ["split.labeled_fraction"]
    assert [c["params"] for c in configs] == [{"split.labeled_fraction": f} for f in (0.25, 0.5, 0.75)]
    assert [c["seeds"] for c in configs] == [[0, 1, 2], [0, 1, 2], [0]]
    assert metrics == sorted(metrics) and AGREE in metrics and GOLD in metrics
    # Without ignoring the seed every run is its own configuration.
    assert len(_configs(seed_key="none")[2]) == 7


def test_means_and_t_intervals_match_a_hand_computation():
    c = _by_fraction(_configs()[2])
    s = c[0.25]["stats"][AGREE]
    half = T2 * 0.03 / math.sqrt(3)  # values 0.55, 0.58, 0.61: sd 0.03
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.58, abs=1e-12) and s["std"] == pytest.approx(0.03, abs=1e-12)
    assert s["ci_low"] == pytest.approx(0.58 - half, abs=1e-12)
    assert s["ci_high"] == pytest.approx(0.58 + half, abs=1e-12)
    s = c[0.5]["stats"][AGREE]  # 0.60, 0.66, 0.69
    half = T2 * _sd([0.60, 0.66, 0.69]) / math.sqrt(3)
    assert s["mean"] == pytest.approx(0.65, abs=1e-12)
    assert (s["ci_high"] - s["ci_low"]) / 2 == pytest.approx(half, abs=1e-12)
    s = c[0.25]["stats"]["metrics/feedback.json:n_disagree"]  # 47, 50, 44: integers count
    assert (s["mean"], s["std"]) == (47, 3) and s["ci_high"] == pytest.approx(47 + T2 * 3 / math.sqrt(3))
    s = c[0.25]["stats"][WIN]  # 0.4, null, 0.5: two runs, t with 1 degree of freedom
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.45)
    assert s["ci_high"] - s["mean"] == pytest.approx(T1 * _sd([0.4, 0.5]) / math.sqrt(2))
    s = c[0.5]["stats"][GOLD]  # three equal values: a zero-width interval, not a null one
    assert s["std"] == 0 and s["mean"] == s["ci_low"] == s["ci_high"] == 0.7  # exact, no 3e-16 noise


def test_one_run_gives_a_null_interval(tmp_path):
    s = _by_fraction(_configs()[2])[0.75]["stats"][AGREE]
    assert s == {"n": 1, "mean": 0.7, "std": None, "ci_low": None, "ci_high": None}
    assert over_runs([]) == {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    assert main(["--input", str(FIXTURE), "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")
                 ]) == 0
    assert "0.7 (1 run, no interval)" in (tmp_path / "s.md").read_text()
    row = next(r for r in json.loads((tmp_path / "s.json").read_text())
               if r["split.labeled_fraction"] == 0.75 and r["metric"] == AGREE)
    assert row["ci_low"] is None and row["ci_high"] is None and row["n"] == 1


def test_the_interval_over_runs_is_the_one_of_stats():
    """One interval function (weakalign.analysis.stats.t_interval, scipy's exact Student-t quantile) for the sweep
    tables and the study alike: no hand-written table of quantiles, and none of the old 1.96 past 30 runs."""
    from weakalign.analysis.stats import t_interval

    xs = [0.1 * i + (i % 3) * 0.01 for i in range(40)]  # 40 runs: df 39, t = 2.0227, not 1.96
    s = over_runs(xs)
    assert (s["mean"], s["ci_low"], s["ci_high"]) == t_interval(xs)
    assert (s["ci_high"] - s["mean"]) / (_sd(xs) / math.sqrt(40)) == pytest.approx(2.0226909, rel=1e-6)
    assert over_runs([0.4, 0.5])["ci_high"] - 0.45 == pytest.approx(T1 * _sd([0.4, 0.5]) / math.sqrt(2))


def test_include_baselines_adds_the_baseline_commit():
    varying, _, configs = _configs(include_baselines=True)
    assert varying == ["split.labeled_fraction", "split.n_labeled"]
    assert configs[0]["params"] == {"split.labeled_fraction": None, "split.n_labeled": 128}  # null sorts first
    assert configs[0]["seeds"] == [0] and len(configs) == 4


def test_metric_selection_by_key_and_glob():
    _, metrics, _ = _configs(patterns=[GOLD, "metrics/feedback.json:*"])
    assert metrics == [GOLD, AGREE, "metrics/feedback.json:n_disagree"]
    with pytest.raises(AggregateError, match="matches no numeric metric"):
        _configs(patterns=["metrics/nope.json:*"])


def test_cli_writes_the_table_and_plot_rows(tmp_path):
    md_path, json_path = tmp_path / "reports" / "sweep.md", tmp_path / "plots" / "sweep.json"
    assert main(["--input", str(FIXTURE), "--out-md", str(md_path), "--out-json", str(json_path),
                 "--metrics", AGREE, GOLD]) == 0
    text = md_path.read_text()
    assert "| split.labeled\\_fraction | runs | base.seed | metrics/feedback.json:agreement\\_weak\\_human |" in text
    assert f"| 0.25 | 3 | 0, 1, 2 | 0.58 ± {T2 * 0.03 / math.sqrt(3):.4g} (3) |" in text
    assert "- lf50-s3: failed" in text
    got = json.loads(json_path.read_text())
    assert len(got) == 6  # 3 configurations x 2 metrics
    assert set(got[0]) == {"split.labeled_fraction", "config", "metric", "n", "mean", "std", "ci_low", "ci_high"}
    assert got[0]["config"] == "split.labeled_fraction=0.25" and got[0]["metric"] == AGREE


def test_markdown_escapes_names_and_values():
    data = _load()
    lf75 = data[1]["experiments"][6]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    lf75["base"]["model"] = "<i>m|x</i> *y*"
    runs, skipped = collect(data)
    varying, metrics, configs = aggregate(runs, "base.seed", [AGREE])
    text = markdown(varying, metrics, configs, skipped, "base.seed")
    assert varying == ["base.model", "split.labeled_fraction"]
    assert "&lt;i&gt;m\\|x&lt;/i&gt; \\*y\\*" in text and "<i>" not in text
    assert "- wip\\_&lt;b&gt;lf75&lt;/b&gt;\\|s1: queued" in text and "<b>" not in text
    lf75_row = next(r for r in rows(configs) if r["split.labeled_fraction"] == 0.75)
    assert lf75_row["base.model"] == "<i>m|x</i> *y*"  # the JSON keeps the raw value


def test_a_seed_run_twice_is_flagged():
    data = _load()
    data[1]["experiments"].append(copy.deepcopy(data[1]["experiments"][0]))  # lf25-s0 once more
    runs, skipped = collect(data)
    text = markdown(*aggregate(runs, "base.seed", [AGREE]), skipped, "base.seed")
    assert "Note: split.labeled\\_fraction=0.25 has base.seed 0 more than once" in text
    assert text.count("Note:") == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    ('{"rev": "workspace"}', "not the output of `dvc exp show --json`"),
    ('[{"rev": "abc", "experiments": [{"revs": [{"data": "oops"}]}]}]', "unexpected `dvc exp show --json` layout"),
    ("[]", "no experiments in"),
    (None, "file not found"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "exps.json"
    if content is not None:
        path.write_text(content)
    assert main(["--input", str(path), "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aggregate: error:") and message in err and "\n" not in err
    assert not (tmp_path / "s.md").exists()


def test_cli_exits_2_when_no_experiment_has_metrics(tmp_path, capsys):
    data = _load()
    data[1]["experiments"] = data[1]["experiments"][-2:]  # only the queued and the failed one
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(data))
    assert main(["--input", str(path), "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")]) == 2
    assert "none of the 2 experiments" in capsys.readouterr().err


TRAIN = """import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"score": p["split"]["labeled_fraction"] + p["base"]["seed"] / 10, "ok": True, "note": "x"},
          open("metrics.json", "w"))
"""


@pytest.mark.slow
def test_real_dvc_exp_show_output(tmp_path, monkeypatch):
    """A throwaway DVC repo with a one-line stage and real experiments: guards against `exp show` format drift."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def run(*cmd):
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}\n{res.stderr[-2000:]}"

    (tmp_path / "params.yaml").write_text("base:\n  seed: 0\nsplit:\n  labeled_fraction: 0.25\n")
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python train.py\n    deps: [train.py]\n"
                                       "    params: [base.seed, split.labeled_fraction]\n"
                                       "    metrics:\n      - metrics.json:\n          cache: false\n")
    dvc = (sys.executable, "-m", "dvc")
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    run(*dvc, "repro", "-q")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    for fraction, seed in ((0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2)):
        run(*dvc, "exp", "run", "-q", "-S", f"base.seed={seed}", "-S", f"split.labeled_fraction={fraction}")
    run(*dvc, "exp", "run", "--queue", "-q", "-S", "base.seed=3")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    assert main(["--out-md", "sweep.md", "--out-json", "sweep.json"]) == 0  # runs `dvc exp show --json` itself
    got = {(r["split.labeled_fraction"], r["metric"]): r for r in json.loads((tmp_path / "sweep.json").read_text())}
    assert set(got) == {(0.25, "metrics.json:score"), (0.5, "metrics.json:score")}  # "ok" (bool), "note" dropped
    assert got[0.25, "metrics.json:score"]["n"] == 2 and got[0.25, "metrics.json:score"]["mean"] == pytest.approx(0.4)
    assert got[0.5, "metrics.json:score"]["ci_high"] - got[0.5, "metrics.json:score"]["mean"] == pytest.approx(
        T1 * _sd([0.6, 0.7]) / math.sqrt(2))
    assert "queued" in (tmp_path / "sweep.md").read_text()


def test_cli_writes_mermaid_charts_of_mean_and_interval(tmp_path):
    chart = tmp_path / "charts.md"
    assert main(["--input", str(FIXTURE), "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json"),
                 "--metrics", AGREE, "--out-chart", str(chart)]) == 0
    text = chart.read_text()
    rows = {r["split.labeled_fraction"]: r for r in json.loads((tmp_path / "s.json").read_text())}
    assert text.count("```mermaid") == 1 and "xychart-beta" in text
    xs = sorted(rows)
    assert f'x-axis "split.labeled_fraction" [{", ".join(chr(34) + json.dumps(x) + chr(34) for x in xs)}]' in text
    means = [rows[x]["mean"] for x in xs]
    assert f"    bar [{', '.join(f'{v:.4g}' for v in means)}]" in text
    lows = [rows[x]["ci_low"] if rows[x]["ci_low"] is not None else rows[x]["mean"] for x in xs]
    assert f"    line [{', '.join(f'{v:.4g}' for v in lows)}]" in text
