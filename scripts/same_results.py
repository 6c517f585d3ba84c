"""Are two pipeline runs' results byte-identical (timings aside)? The check behind "refactoring changes no result".

    python scripts/same_results.py RUN_A RUN_B

RUN_A and RUN_B are two repro'ed checkouts (e.g. `git archive <rev> | tar -x -C DIR`, `cp presets/tiny.yaml
params.yaml`, `git init`, commit, `dvc repro`, once per revision). Compared: every data JSONL (pairs, splits,
labels, feedback, generations) and model safetensors byte for byte, and every metrics file as JSON without its
timings (`*_seconds`, `resumed_from_step` and, before the metrics/info split, `seconds`, `train_runtime_s`).
Exit 0 when all are identical, 1 otherwise, listing what differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TIMINGS = ("seconds", "seconds_per_1000_pairs", "train_runtime_s", "resumed_from_step")


def _strip(d):
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in d.items()
            if not any(k == t or k.endswith("_" + t) for t in TIMINGS)}


def main(a: Path, b: Path) -> int:
    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    same, differ = 0, []
    for pattern in ("data/**/*.jsonl", "models/**/*.safetensors"):
        for pa in sorted(a.glob(pattern)):
            pb = b / pa.relative_to(a)
            if pb.is_file() and sha(pa) == sha(pb):
                same += 1
            else:
                differ.append(str(pa.relative_to(a)))
    for pa in sorted(a.glob("metrics/**/*.json")):
        if pa.name.startswith("study") or pa.name.endswith(".info.json"):
            continue
        pb = b / pa.relative_to(a)
        if pb.is_file() and _strip(json.loads(pa.read_text())) == _strip(json.loads(pb.read_text())):
            same += 1
        else:
            differ.append(str(pa.relative_to(a)))
    print(f"{same} files identical (timings aside), {len(differ)} different" + (f": {differ}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
