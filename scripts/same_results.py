"""Are two pipeline runs' results byte-identical (timings aside)? The check behind "refactoring changes no result".

    python scripts/same_results.py RUN_A RUN_B

RUN_A and RUN_B are two repro'ed checkouts (e.g. a `git clone` of each revision, each with its own DVC cache, and
`dvc repro -f`; for a preset, its params composed into params.yaml first, as weakalign.fingerprint does for the tiny
one). Compared (weakalign.fingerprint.result_hashes): every data JSONL (pairs, splits, labels, feedback, generations)
and model safetensors byte for byte, and every metrics file as JSON without its timings (`*_seconds`,
`resumed_from_step` and, before the metrics/info split, `seconds`, `train_runtime_s`); a records folder (labels of a
labeler that is off) by the file it replaced. Exit 0 when all are identical, 1 otherwise, listing what differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from weakalign.fingerprint import result_hashes


def main(a: Path, b: Path) -> int:
    ha, hb = result_hashes(a), result_hashes(b)
    differ = sorted(k for k in ha.keys() | hb.keys() if ha.get(k) != hb.get(k))
    same = len(ha.keys() & hb.keys()) - len([k for k in differ if k in ha and k in hb])
    print(f"{same} files identical (timings aside), {len(differ)} different" + (f": {differ}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
