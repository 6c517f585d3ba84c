"""Stage align@<source>: DPO-train the target from its starting point (the base, or its SFT) on D_u with one feedback source's labels.

    python stages/align.py --source ${item} --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --unlabeled ${paths.unlabeled} --reference ${paths.reference} --feedback ${paths.feedback}/${item}.jsonl \
        --out ${paths.targets}/${item} --metrics ${paths.metrics}/align/${item}.json \
        --live ${paths.dvclive}/align/${item} --checkpoints ${paths.checkpoints}/align/${item}

Every source trains with the same `align.dpo` (and `align.lora`) settings and seed; only the labels differ. The
reference's log-probs of D_u come from the `reference` stage, computed once for every source. Feedback rows with
weights (`weak_confident` with `compare.confident_weighting: margin`) are drawn in proportion to them. Checkpoints go to
--checkpoints every `dpo.save_steps` steps; a killed run resumes from the newest one.
"""

import logging

from weakalign.analysis.compare import feedback_choice, weighted_draw
from weakalign.cli import seed_everything, stage
from weakalign.records import resume
from weakalign.records.io import atomic_dir, read_jsonl, read_numbered, write_metrics
from weakalign.records.schema import Pair, Preference, ReferenceLogps

log = logging.getLogger("weakalign.align")


def main(args, params):
    # torch, transformers and trl load here, not at the top, so that --help answers at once.
    from weakalign.modeling.models import load_model, load_tokenizer
    from weakalign.modeling.saved_models import model_card, save_model
    from weakalign.training import dpo

    seed_everything(params.base.seed)
    unlabeled = read_jsonl(args.unlabeled, Pair)
    feedback = read_numbered(args.feedback, Preference)
    choice = feedback_choice(feedback, {p.id for p in unlabeled}, args.feedback)
    data = dpo.triples(unlabeled, choice)  # in D_u order
    # The reference's log-probs (one `reference` stage for every source), oriented as (chosen, rejected).
    ref = {r.pair_id: (r.logp_1, r.logp_2) for r in read_jsonl(args.reference, ReferenceLogps)}
    missing = [p.id for p in unlabeled if p.id in choice and p.id not in ref]
    if missing:
        raise ValueError(f"{args.reference}: no reference log-probs for D_u pair {missing[0]!r} "
                         f"({len(missing)} missing); rerun the reference stage")
    refs = [ref[p.id] if choice[p.id] == 1 else ref[p.id][::-1] for p in unlabeled if p.id in choice]
    weight = {f.pair_id: f.weight for _, f in feedback}
    draw = weighted_draw([weight[p.id] for p in unlabeled if p.id in choice], params.base.seed)
    if draw != list(range(len(data))):
        log.info("weighted feedback: %d draws cover %d distinct pairs", len(draw), len(set(draw)))
        data, refs = [data[i] for i in draw], [refs[i] for i in draw]
    start = params.target_start(args.base, args.sft_target)
    tok = load_tokenizer(start)
    model = load_model(start)
    log.info("align on %s feedback: %d pairs", args.source, len(data))
    model, summary = dpo.train(model, tok, data, params.align.dpo, params.base.seed, args.live, args.checkpoints,
                               resume.files_digest(start), params.align.lora, ref_logps=refs)
    if not resume.is_main_process():  # under accelerate launch the first process writes
        return
    with atomic_dir(args.out) as tmp:
        card = model_card(f"align@{args.source}", start, params.align.dpo.values(),
                          {"D_u": args.unlabeled, "feedback": args.feedback},
                          adapter=params.align.lora.use_peft)
        save_model(model, tok, tmp, base=start, card=card)  # under LoRA only the adapter; load_model merges it
    write_metrics(args.metrics, {"source": args.source, **summary})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__, distributed=lambda params: True))
