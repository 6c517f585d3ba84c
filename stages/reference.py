"""Stage reference: the targets' reference log-probs of every D_u pair, computed once for all feedback sources.

    python stages/reference.py --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --unlabeled ${paths.unlabeled} --out ${paths.reference}

Every `align@<source>` stage DPO-trains the same start model on the same D_u pairs; only which response is chosen
differs. TRL scores each pair's two responses under the reference before training (`precompute_ref_log_probs`),
so without this stage each source scored D_u again. Here TRL's own precomputation runs once, with the targets'
settings (`align.dpo`, `align.lora`), and `align` reads the numbers back, oriented by its labels
(tests/test_dpo.py checks that they equal what each source's trainer computes itself).
"""

import logging

from weakalign.cli import seed_everything, stage
from weakalign.records.io import read_jsonl, write_jsonl
from weakalign.records.schema import Pair, ReferenceLogps

log = logging.getLogger("weakalign.reference")


def main(args, params):
    # torch, transformers and trl load here, not at the top, so that --help answers at once.
    from weakalign.modeling.models import load_model, load_tokenizer
    from weakalign.training.dpo import reference_logps

    seed_everything(params.base.seed)
    unlabeled = read_jsonl(args.unlabeled, Pair)
    start = params.target_start(args.base, args.sft_target)
    logps = reference_logps(load_model(start), load_tokenizer(start),
                            [(p.prompt, p.response_1, p.response_2) for p in unlabeled],
                            params.align.dpo, params.base.seed, params.align.lora)
    log.info("reference log-probs of %d D_u pairs from %s", len(unlabeled), start)
    write_jsonl(args.out, [ReferenceLogps(pair_id=p.id, logp_1=a, logp_2=b)
                           for p, (a, b) in zip(unlabeled, logps, strict=True)])


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
