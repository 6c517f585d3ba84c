"""Stage holdout: set aside the evaluation prompts before anything is generated or labeled.

    python stages/holdout.py --prompts ${paths.prompts_all} --train ${paths.prompts_train} \
        --test ${paths.prompts_test}
"""

import logging

from weakalign.cli import stage
from weakalign.data.split import check_unique, holdout
from weakalign.records.io import read_numbered, write_jsonl
from weakalign.records.schema import Prompt

log = logging.getLogger("weakalign.holdout")


def main(args, params):
    numbered = read_numbered(args.prompts, Prompt)
    check_unique(numbered, args.prompts)
    prompts = [p for _, p in numbered]
    train, test = holdout(prompts, params.holdout.n_test, params.base.seed, params.holdout.n_train)
    log.info("%d prompts: %d for training, %d held out for evaluation", len(prompts), len(train), len(test))
    write_jsonl(args.train, train)
    write_jsonl(args.test, test)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
