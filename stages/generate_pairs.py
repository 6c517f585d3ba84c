"""Stage generate_pairs: the base policy samples two responses to every training prompt (sandbox), or the data
source's own pairs of the training prompts are taken (jsonl / hf: --source-pairs, written by ingest).

    python stages/generate_pairs.py --model ${paths.base_model} --prompts ${paths.prompts_train} \
        --source-pairs ${paths.source_pairs} --out ${paths.pairs} --metrics ${paths.metrics}/pairs.json \
        --checkpoints ${paths.checkpoints}/generate_pairs

With `generate_pairs.styles`, each response of a pair is sampled under its own instruction (two different styles
per prompt, a seeded draw), so the pool holds quality differences; the pair keeps the plain prompt.
Prompts whose two samples are empty or identical are sampled again (`generate_pairs.max_attempts` rounds); pairs
still unusable are dropped and counted by reason in the metrics file. Finished batches are appended to
--checkpoints; a killed run resumes after the last one with the same results.
"""

import logging

from weakalign.cli import seed_everything, stage
from weakalign.data.sandbox import steered, style_pairs
from weakalign.records import resume
from weakalign.records.io import DataError, read_jsonl, read_records, write_jsonl, write_metrics
from weakalign.records.schema import Pair, Prompt, response_problem

log = logging.getLogger("weakalign.generate_pairs")


def from_source(args, params, prompts: list[Prompt]) -> None:
    """Real data: every source pair whose prompt is a training prompt, in the source's order, labels kept.

    A pair whose prompt alone (through the chat template) fills the trainers' `max_length` could be neither
    trained on nor labeled (TRL drops it), so it is dropped here and counted as `prompt_too_long`."""
    train = {p.id for p in prompts}
    source = read_records(args.source_pairs, Pair)
    if source is None:
        raise DataError(f"{args.source_pairs}: ingest wrote no pairs (a source of prompts only): "
                        f"data.source {params.data.source!r} needs them")
    pairs = [p for p in source if p.prompt_id in train]
    limits = [m for m in (params.train_weak.dpo.max_length, params.align.dpo.max_length) if m is not None]
    kept, too_long = pairs, 0
    if limits:
        from weakalign.modeling.generation import chat_prompt  # torch and transformers: not at the top (see main)
        from weakalign.modeling.models import load_tokenizer

        tok = load_tokenizer(args.model)
        n_tokens = {p.prompt_id: len(tok.apply_chat_template(chat_prompt(p.prompt), add_generation_prompt=True,
                                                             tokenize=True, return_dict=False)) for p in pairs}
        kept = [p for p in pairs if n_tokens[p.prompt_id] < min(limits)]
        too_long = len(pairs) - len(kept)
    log.info("%s data: %d pairs for %d training prompts; %d dropped, prompt of %d+ tokens", params.data.source,
             len(kept), len(prompts), too_long, min(limits, default=0))
    if not kept:
        raise ValueError(f"no usable pairs: all {len(pairs)} prompts fill max_length={min(limits)} tokens")
    write_jsonl(args.out, kept)
    write_metrics(args.metrics, {"n_prompts": len(prompts), "n_pairs": len(kept), "dropped": {
        "empty_response": 0, "identical_responses": 0, "prompt_too_long": too_long}})


def main(args, params):
    g = params.generate_pairs
    seed_everything(params.base.seed)
    prompts = read_jsonl(args.prompts, Prompt)
    if params.data.source != "sandbox":
        return from_source(args, params, prompts)
    # torch and transformers load here (and in from_source), not at the top, so that --help answers at once.
    from weakalign.modeling.generation import sample
    from weakalign.modeling.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_model(args.model)
    work = resume.prepare(args.checkpoints, resume.fingerprint(
        "generate_pairs", g.model_dump(), params.base.seed, [p.model_dump() for p in prompts],
        resume.files_digest(args.model)))
    # With styles, each response is sampled from its own policy (the prompt plus its style's instruction); the
    # pair keeps the plain prompt. Without, the two responses are two samples of the plain prompt.
    styles = dict(zip((p.id for p in prompts), style_pairs(len(prompts), len(g.styles), params.base.seed))) \
        if g.styles else {}
    responses: dict[str, list[str]] = {}
    todo = prompts
    for attempt in range(g.max_attempts):
        partial = resume.BatchLog(work / f"round{attempt + 1}.jsonl")
        seed, desc = params.base.seed + 7919 * attempt, f"pairs (round {attempt + 1})"
        if styles:
            texts = [steered(p.prompt, g.styles[k]) for p in todo for k in styles[p.id]]
            flat = sample(model, tok, texts, g, seed=seed, n_samples=1, desc=desc, partial=partial)
            samples = [[flat[2 * i][0], flat[2 * i + 1][0]] for i in range(len(todo))]
        else:
            samples = sample(model, tok, [p.prompt for p in todo], g, seed=seed, n_samples=2, desc=desc,
                             partial=partial)
        partial.close()
        for p, s in zip(todo, samples, strict=True):
            responses[p.id] = s
        todo = [p for p in todo if response_problem(*responses[p.id])]
        if not todo:
            break
        log.info("round %d: %d prompts gave unusable pairs, sampling them again", attempt + 1, len(todo))
    dropped: dict[str, int] = {"empty_response": 0, "identical_responses": 0, "prompt_too_long": 0}
    pairs = []
    for p in prompts:
        a, b = responses[p.id]
        why = response_problem(a, b)
        if why:
            dropped[why] += 1
            continue
        pairs.append(Pair(id=p.id, prompt_id=p.id, prompt=p.prompt, response_1=a, response_2=b))
    log.info("%d pairs from %d prompts; dropped %s", len(pairs), len(prompts), dropped)
    if not pairs:
        raise ValueError("no usable pairs were generated")
    write_jsonl(args.out, pairs)
    # With styles, how often each was drawn into a kept pair: the pool's make-up, beside its size.
    drawn = {f"style_{i}": sum(i in styles[p.id] for p in pairs) for i in range(len(g.styles))}
    write_metrics(args.metrics, {"n_prompts": len(prompts), "n_pairs": len(pairs), "dropped": dropped,
                                 **({"styles": drawn} if drawn else {})})
    resume.finish(args.checkpoints)


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
