"""Write the sandbox's raw prompts, data/raw/prompts.jsonl (committed; the pipeline's raw input).

    python scripts/make_prompts.py --n 600 --seed 0 --out data/raw/prompts.jsonl

Deterministic: the same arguments always write the same file (tests/test_sandbox.py checks the committed one).
"""

import argparse

from weakalign.io import write_jsonl
from weakalign.sandbox import make_prompts

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    print(f"{a.out}: {write_jsonl(a.out, make_prompts(a.n, a.seed))} prompts")
