"""Stage split: D_l (labeled) and D_u (unlabeled) pairs, by prompt id, with the leakage guard.

    python stages/split.py --pairs ${paths.annotated} --test ${paths.prompts_test} --labeled ${paths.labeled} \
        --unlabeled ${paths.unlabeled}
"""

import logging

from weakalign.cli import stage
from weakalign.data.split import check_disjoint, split
from weakalign.records.io import read_jsonl, write_jsonl
from weakalign.records.schema import Pair, Prompt

log = logging.getLogger("weakalign.split")


def main(args, params):
    pairs = read_jsonl(args.pairs, Pair)
    test = read_jsonl(args.test, Prompt)
    n_labeled = params.split.labeled_size(len(pairs))
    labeled, unlabeled = split(pairs, n_labeled, params.split.n_unlabeled, params.base.seed)
    check_disjoint(labeled, unlabeled, test)
    log.info("D_l: %d pairs, D_u: %d pairs, test: %d prompts (disjoint)", len(labeled), len(unlabeled), len(test))
    write_jsonl(args.labeled, labeled)
    write_jsonl(args.unlabeled, unlabeled)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
