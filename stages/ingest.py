"""Stage ingest: read the data source (`data:` in params.yaml) into the pipeline's prompts and pairs.

    python stages/ingest.py --input ${data.path} --prompts ${paths.prompts_all} --pairs ${paths.source_pairs} \
        --metrics ${paths.metrics}/ingest.json

`sandbox`: --input is the prompt file; every prompt is checked (schema, unique ids and texts), and the --pairs
folder holds only a README (generate_pairs samples the pairs; weakalign.records.io.write_records). `jsonl` / `hf`:
the preference data, with its own human labels, through weakalign.data.sources, its pairs in the --pairs folder;
--prompts gets each distinct prompt once (id = its prompt_id), so the holdout splits prompts, never a prompt's pairs.
Every row read is kept or counted as dropped, by reason, in the metrics file.
"""

import logging

from weakalign.cli import stage
from weakalign.data.sources import load_pairs
from weakalign.data.split import check_unique
from weakalign.records.io import read_numbered, write_jsonl, write_metrics, write_records
from weakalign.records.schema import DROP_REASONS, Prompt

log = logging.getLogger("weakalign.ingest")


def main(args, params):
    data = params.data
    if data.source == "sandbox":
        numbered = read_numbered(args.input, Prompt)
        check_unique(numbered, args.input)
        prompts, pairs, dropped, n_rows = [p for _, p in numbered], [], dict.fromkeys(DROP_REASONS, 0), len(numbered)
    else:
        loaded = load_pairs(data.model_copy(update={"path": args.input}), params.base.seed)
        pairs, dropped, n_rows = loaded.pairs, loaded.dropped, loaded.n_rows
        first: dict[str, Prompt] = {}
        for p in pairs:
            first.setdefault(p.prompt_id, Prompt(id=p.prompt_id, prompt=p.prompt))
        prompts = list(first.values())
    log.info("%s: %d rows, %d prompts, %d pairs; dropped %s", data.source, n_rows, len(prompts), len(pairs),
             {k: v for k, v in dropped.items() if v} or "none")
    write_jsonl(args.prompts, prompts)
    write_records(args.pairs, None if data.source == "sandbox" else pairs,
                  "No pairs: the sandbox source holds prompts only; generate_pairs samples two responses to each.")
    write_metrics(args.metrics, {"source": data.source, "n_rows": n_rows, "n_prompts": len(prompts),
                              "n_pairs": len(pairs), "dropped": dropped})


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
