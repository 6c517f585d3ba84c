"""The design pilot (docs/STUDY.md, "The pilot"): a grid of sandbox designs over seeds, each cell one `dvc repro`
of a scratch clone with its params changed, its numbers appended to a JSONL file.

    python scripts/pilot.py teacher --seeds 0,1,2 --out study/pilot/teacher.jsonl   # up to `compare`: label accuracy
    python scripts/pilot.py target --seeds 0,1,2 --out study/pilot/target.jsonl    # the whole pipeline: gold reward
    python scripts/pilot.py agreement --work ../hh-pilot --out study/pilot/agreement.jsonl  # hh-local: weak vs human

The clone (`--work`, default /tmp/weakalign-pilot) is made from the committed HEAD with its own DVC cache, so
DVC's run cache serves every stage two cells share (a seed's pairs across D_l sizes, say) and nothing here touches
the workspace. Cells already in `--out` are skipped, so a killed pilot continues. Each cell is a design (a dict
of params overrides, `key.path: value`) and a seed; the cell's wall time is recorded beside its numbers, so the
table says what each design costs on the machine that ran it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from weakalign.config.params import compose
from weakalign.fingerprint import machine

ROOT = Path(__file__).resolve().parents[1]
STYLES = ["", "Write it in a warm, enthusiastic tone.", "Write it in a harsh, critical tone."]
# 472 training prompts (600 less 128 test): D_u 192 first, D_l from the rest. Every design names each key it
# varies, so a cell means the same after params.yaml took styles_dl256_e1 as its default.
SIZES = {"holdout.n_train": 472, "split.n_unlabeled": 192}
# The chosen design (params.yaml): every other design is it with what it varies changed.
STYLED = {**SIZES, "generate_pairs.styles": STYLES, "split.n_labeled": 256, "train_weak.dpo.num_train_epochs": 1,
          "annotate.tau": 0.5}
TEACHER = {
    "plain_dl256_e1": {**STYLED, "generate_pairs.styles": []},
    "styles_dl64_e2": {**STYLED, "split.n_labeled": 64, "train_weak.dpo.num_train_epochs": 2},
    "styles_dl256_e1": STYLED,
    "styles_dl256_e1_layers8": {**STYLED, "train_weak.model": "base@layers=8"},
    # Levers for the teacher curve's low end (docs/STUDY.md, "The teacher curve has no range"): depth, then the
    # annotators' noise (tau also relabels D_u, so the tau cells are pilot cells, not teachers of the study).
    "styles_dl256_e1_layers4": {**STYLED, "train_weak.model": "base@layers=4"},
    "styles_dl256_e1_layers2": {**STYLED, "train_weak.model": "base@layers=2"},
    "styles_dl256_e1_tau1": {**STYLED, "annotate.tau": 1.0},
    "styles_dl256_e1_tau4": {**STYLED, "annotate.tau": 4.0},
}
# Real data (presets/hh-local.yaml as the base): the teacher's agreement with human labels on every pair the file
# holds beyond D_l and 24 test prompts. max_length 1024 keeps the long dialogues the preset's 256 drops (so D_u
# holds about 1,000 pairs); issue 29's item 7.
AGREEMENT = {
    "hh_dl128_all": {"holdout.n_train": None, "split.n_labeled": 128, "split.n_unlabeled": None,
                     "train_weak.dpo.max_length": 1024, "align.dpo.max_length": 1024},
}
TARGET = {
    "styles_dl256_e1": {**TEACHER["styles_dl256_e1"], "align.sources": ["gold", "human", "weak", "random"]},
}


def cell_params(base: dict, overrides: dict, seed: int) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in {**overrides, "base.seed": seed}.items():
        node = out
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        if last not in node:
            raise KeyError(f"{key}: not a key of params.yaml")
        node[last] = value
    return out


def numbers(work: Path, grid: str) -> dict:
    def read(name: str) -> dict:
        return json.loads((work / "metrics" / name).read_text())

    fb, ann = read("feedback.json"), read("annotate.json")
    row = {"acc_weak": fb["accuracy_weak_vs_gold"], "acc_weak_lo": fb["accuracy_weak_vs_gold_lo"],
           "acc_weak_hi": fb["accuracy_weak_vs_gold_hi"], "acc_human": fb["accuracy_human_vs_gold"],
           "agreement": fb["agreement_weak_human"], "n_labeled": fb["n_labeled"], "n_unlabeled": fb["n_unlabeled"],
           "agreement_lo": fb["agreement_weak_human_lo"], "agreement_hi": fb["agreement_weak_human_hi"],
           "mean_abs_gold_gap": ann.get("mean_abs_gold_gap"),
           "teacher_final_loss": read("train_weak.json").get("final_loss")}
    if grid == "target":
        al = read("alignment.json")
        row["gold_reward"] = {m: v["gold_reward_mean"] for m, v in al.items() if isinstance(v, dict)
                              and "gold_reward_mean" in v}
        row["gold_reward_sem"] = {m: v["gold_reward_sem"] for m, v in al.items() if isinstance(v, dict)
                                  and "gold_reward_sem" in v}
        row["kl"] = {m: v.get("kl_estimate") for m, v in al.items() if isinstance(v, dict) and "kl_estimate" in v}
        row["heldout_accuracy"] = {m: v.get("heldout_accuracy") for m, v in al.items()
                                   if isinstance(v, dict) and "heldout_accuracy" in v}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid", choices=["teacher", "target", "agreement"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--designs", default=None, help="comma-separated names (default: every design of the grid)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/weakalign-pilot"))
    args = ap.parse_args(argv)
    designs = {"teacher": TEACHER, "target": TARGET, "agreement": AGREEMENT}[args.grid]
    names = args.designs.split(",") if args.designs else list(designs)
    work = args.work
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        subprocess.run(["dvc", "config", "--local", "cache.dir", str(work) + "-cache"], cwd=work, check=True)
    # The agreement grid starts from the hh-local preset; the clone's params.yaml is put back at the end.
    default = yaml.safe_load((work / "params.yaml").read_text())
    base = compose(work / "presets/hh-local.yaml") if args.grid == "agreement" else default
    done = set()
    if args.out.exists():
        done = {(r["design"], r["seed"]) for r in map(json.loads, args.out.read_text().splitlines())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    target = [] if args.grid == "target" else ["compare"]
    for seed in map(int, args.seeds.split(",")):
        for name in names:
            if (name, seed) in done:
                continue
            (work / "params.yaml").write_text(yaml.safe_dump(cell_params(base, designs[name], seed), sort_keys=False))
            t = time.time()
            res = subprocess.run(["dvc", "repro", *target], cwd=work, capture_output=True, text=True)
            if res.returncode:
                print(f"{name} seed {seed}: failed\n{res.stderr[-3000:]}", file=sys.stderr)
                return 1
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=work, capture_output=True,
                                    text=True).stdout.strip()
            row = {"design": name, "seed": seed, "wall_s": round(time.time() - t), "cpu": machine()["cpu"],
                   "commit": commit, **numbers(work, args.grid)}
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    (work / "params.yaml").write_text(yaml.safe_dump(default, sort_keys=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WEAKALIGN_LOG", "WARNING")
    raise SystemExit(main())
