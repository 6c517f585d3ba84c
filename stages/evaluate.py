"""Stage evaluate: responses of the base and of every aligned target to the test prompts, scored by the gold judge.

    python stages/evaluate.py --base ${paths.base_model} --sft-target ${paths.sft_target} \
        --targets ${paths.targets} --prompts ${paths.prompts_test} --labeled ${paths.labeled} \
        --generations ${paths.generations} --metrics ${paths.metrics}/alignment.json \
        --checkpoints ${paths.checkpoints}/evaluate

Every model samples with the same seed and settings (`evaluate`), so differences come from the weights alone.
Each target's drift from its start is scored too: its log-ratio to the start model on its own samples of the first
`evaluate.kl_prompts` test prompts (a KL estimate), and its held-out preference accuracy: its implicit reward's
choice on D_l pairs (never in its training) against gold.
Finished batches are appended to --checkpoints; a killed run resumes after the last one with the same results.
"""

import logging
from pathlib import Path

from weakalign.analysis.evaluation import alignment_metrics, heldout_metrics, heldout_pairs, kl_metrics
from weakalign.cli import seed_everything, stage
from weakalign.labelers.judge import make_judge
from weakalign.records import resume
from weakalign.records.io import read_jsonl, write_jsonl, write_metrics
from weakalign.records.schema import Pair, Prompt

log = logging.getLogger("weakalign.evaluate")


def main(args, params):
    # torch, transformers and trl load here, not at the top, so that --help answers at once.
    from weakalign.labelers.rewards import log_ratios
    from weakalign.modeling.generation import sample
    from weakalign.modeling.models import load_model, load_tokenizer

    seed_everything(params.base.seed)
    prompts = read_jsonl(args.prompts, Prompt)
    texts = [p.prompt for p in prompts]
    judge = make_judge(params.judge)
    # "base" is the targets' starting point: the SFT model when sft.enabled.
    models = {"base": params.target_start(args.base, args.sft_target)} | {s: str(Path(args.targets) / s) for s in params.align.sources}
    work = resume.prepare(args.checkpoints, resume.fingerprint(
        "evaluate", params.evaluate.model_dump(), params.base.seed, texts,
        {name: resume.files_digest(path) for name, path in models.items()}, resume.files_digest(args.labeled)))
    scores, words, rows = {}, {}, []
    for name, path in models.items():
        tok, model = load_tokenizer(path), load_model(path)
        partial = resume.BatchLog(work / f"{name}.jsonl")
        responses = [s[0] for s in sample(model, tok, texts, params.evaluate, seed=params.base.seed,
                                          desc=f"evaluate {name}", partial=partial)]
        partial.close()
        scores[name] = judge.score(texts, responses) if judge else None  # no gold judge: gold stays null
        words[name] = [len(x.split()) for x in responses]
        rows += [{"model": name, "prompt_id": p.id, "prompt": p.prompt, "response": x, "gold": g}
                 for p, x, g in zip(prompts, responses, scores[name] or [None] * len(texts), strict=True)]
        if judge:
            log.info("%s: mean gold reward %.3f", name, sum(scores[name]) / len(scores[name]))
    metrics = alignment_metrics(scores, words)
    # How far each target moved from its start: log pi_target(y|x) - log pi_start(y|x) on its own samples (a
    # Monte Carlo estimate of KL(target || start), in nats) and, negated, on the base's samples (of KL(start || target)).
    responses = {name: [row["response"] for row in rows if row["model"] == name] for name in models}
    # With sft on, every start has fine-tuned on D_l's chosen responses: D_l is then not held out, so not scored.
    n_heldout = 0 if params.sft.enabled else params.evaluate.heldout_pairs
    heldout = heldout_pairs(read_jsonl(args.labeled, Pair), n_heldout, params.base.seed)
    start, tok = load_model(models["base"]), load_tokenizer(models["base"])
    for name, path in models.items():
        if name == "base":
            continue
        triples = list(zip(texts, responses[name], responses["base"], strict=True))[:params.evaluate.kl_prompts]
        target = load_model(path)  # once for both scorings
        partial = resume.BatchLog(work / f"kl_{name}.jsonl")
        own, on_base = log_ratios(target, start, tok, triples, params.align.dpo,
                                  params.evaluate.batch_size, partial)
        partial.close()
        metrics[name] |= kl_metrics(own, on_base)
        if heldout:  # the target's own preference on pairs it never saw, against gold
            partial = resume.BatchLog(work / f"heldout_{name}.jsonl")
            r1, r2 = log_ratios(target, start, tok, [(p.prompt, p.response_1, p.response_2) for p in heldout],
                                params.align.dpo, params.evaluate.batch_size, partial)
            partial.close()
            metrics[name] |= heldout_metrics(r1, r2, [p.gold for p in heldout])
        log.info("%s: KL estimate to its start %.2f nats per response", name, metrics[name]["kl_estimate"])
    write_jsonl(args.generations, rows)
    write_metrics(args.metrics, {"gold_judge": judge.name if judge else "none", **metrics})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
