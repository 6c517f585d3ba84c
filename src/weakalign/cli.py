"""What every stage entry point shares: logging, params loading and clean failure.

A stage script is `main(args, params)` wrapped by :func:`run`, which validates params.yaml before anything heavy,
turns expected errors (bad data, bad params, leakage) into one clear line and exit code 2, and logs the stage's
wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

from . import resume
from .io import DataError
from .params import Params, ParamsError, load_params
from .split import LeakageError

log = logging.getLogger("weakalign")


def run(main: Callable[[argparse.Namespace, Params], None], parser: argparse.ArgumentParser,
        argv: list[str] | None = None) -> int:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("WEAKALIGN_LOG", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    stage = parser.prog + (f"@{args.source}" if getattr(args, "source", None) else "")
    resume.STAGE = stage
    try:
        params = load_params(args.params)
        t0 = time.perf_counter()
        log.info("%s: start", stage)
        main(args, params)
        log.info("%s: done in %.1f s", stage, time.perf_counter() - t0)
    except (DataError, ParamsError, LeakageError, FileNotFoundError, ValueError) as e:
        if os.environ.get("WEAKALIGN_DEBUG"):
            raise
        print(f"{stage}: error: {e}\n(set WEAKALIGN_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    return 0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (transformers' `set_seed` does all three)."""
    from transformers import set_seed

    set_seed(seed)
