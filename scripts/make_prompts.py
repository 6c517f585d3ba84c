"""Write the sandbox's raw prompts (committed; the pipeline's raw input), for either task (docs/SANDBOX.md).

    python scripts/make_prompts.py --n 600 --seed 0 --out data/raw/prompts.jsonl
    python scripts/make_prompts.py --task tone --n 600 --seed 0 --out data/raw/tone_prompts.jsonl

Deterministic: the same arguments always write the same file (tests/test_sandbox.py checks the committed ones).
"""

import argparse

from weakalign.data.sandbox import make_prompts, make_tone_prompts
from weakalign.records.io import write_jsonl

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["vader", "tone"], default="vader",
                   help="vader: review continuations (judge.name vader); tone: continuations in a requested tone")
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    make = make_tone_prompts if a.task == "tone" else make_prompts
    print(f"{a.out}: {write_jsonl(a.out, make(a.n, a.seed))} prompts")
