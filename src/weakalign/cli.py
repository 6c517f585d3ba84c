"""What every stage entry point shares: its arguments, logging, params loading and clean failure.

A stage script is `main(args, params)` wrapped by :func:`run`, which validates params.yaml before anything heavy,
turns expected errors (bad data, bad params, leakage) into one clear line and exit code 2, and logs the stage's
wall time. Its arguments are the flags of the command in its docstring, whose values are templates: `${a.b}` is
params' `a.b`, `${item}` the feedback source of `align@<item>`. dvc.yaml runs a stage as `python stages/<name>.py`
and nothing else, so no value from params ever reaches a shell (a path holding `$(...)` used to run as a command
before any check); each flag may still be given by hand, and `${item}` comes from `--source` or from DVC_STAGE,
which DVC sets to the stage's name. A stage imports the modules that load torch, transformers or trl inside `main`,
never at its top, so that `--help` and a bad argument answer at once (tests/test_cli.py checks every stage).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from weakalign.config.params import Params, ParamsError, load_params
from weakalign.data.split import LeakageError
from weakalign.records import resume
from weakalign.records.io import DataError, stage_outputs

log = logging.getLogger("weakalign")


def setup_logging() -> None:
    """Every command's log lines: time, logger, level, message; the level from WEAKALIGN_LOG (default INFO)."""
    logging.basicConfig(level=os.environ.get("WEAKALIGN_LOG", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # Where DeepSpeed is installed (`make test`'s extras, EXTRAS=deepspeed), transformers imports it in every stage,
    # and on a machine without a GPU it warns once per process that it fell back to the CPU: on a CPU machine that
    # is the expected case, not news. That one message is dropped; DeepSpeed's other warnings still show.
    logging.getLogger("DeepSpeed").addFilter(_no_cpu_fallback_note)


def _no_cpu_fallback_note(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Setting accelerator to CPU.")


def command_template(doc: str, name: str) -> dict[str, str]:
    """{flag: template} of the `python stages/<name>.py ...` command in a stage's docstring (with its continuations)."""
    command = re.search(rf"python stages/{name}\.py(?:.*\\\n)*.*", doc)
    if not command:
        raise ValueError(f"stages/{name}.py: no `python stages/{name}.py` command in its docstring")
    return dict(re.findall(r"(--[\w-]+) (\S+)", command.group(0)))


def command_flags(doc: str, name: str) -> list[str]:
    """The flags of a stage's docstring command."""
    return list(command_template(doc, name))


_TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def resolve(template: str, params: Params, item: str | None) -> str:
    """A docstring command's value with `${a.b}` as params' `a.b` and `${item}` as `item`."""
    values = params.model_dump()

    def value(m: re.Match) -> str:
        if m.group(1) == "item":
            if item is None:
                raise ValueError("which feedback source? give --source, or run the stage through `dvc repro` "
                                 "(DVC_STAGE names it)")
            return item
        node = values
        for key in m.group(1).split("."):
            node = node[key]
        return str(node)

    return _TEMPLATE.sub(value, template)


def stage(main: Callable[[argparse.Namespace, Params], None], doc: str, script: str,
          distributed: Callable[[Params], bool] | None = None) -> int:
    """Run a stage script whose docstring gives its command: the flags of that command are its arguments, each
    defaulting to its template resolved from params (one declaration; tests/test_cli.py checks dvc.yaml against
    it)."""
    name = Path(script).stem
    # --help names what the user types: the script itself, or the DVC stage that runs it (with what it needs).
    parser = argparse.ArgumentParser(prog=f"python stages/{name}.py", description=doc,
                                     epilog=f"In the pipeline: `dvc repro {name}{'@<source>' if name == 'align' else ''}` "
                                     "(this stage and what it needs), `make repro` (everything).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    templates = command_template(doc, name)
    for flag, template in templates.items():
        parser.add_argument(flag, metavar="PATH" if flag != "--source" else "NAME",
                            help=f"default {template} (from params)")
    return run(main, parser, distributed=distributed, templates=templates)


def run(main: Callable[[argparse.Namespace, Params], None], parser: argparse.ArgumentParser,
        argv: list[str] | None = None, distributed: Callable[[Params], bool] | None = None,
        templates: dict[str, str] | None = None) -> int:
    """Run a stage. A training stage (`distributed(params)` true: it trains this time) with `base.num_processes`
    > 1 relaunches itself under `accelerate launch` and returns its exit status; in there, only the first process
    writes outputs."""
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    setup_logging()
    # `${item}`: the source named by hand, or by DVC (DVC_STAGE is `align@weak` for the foreach stage align@weak)
    dvc_stage = os.environ.get("DVC_STAGE", "")
    item = getattr(args, "source", None) or (dvc_stage.partition("@")[2] if "@" in dvc_stage else None)
    stage = Path(parser.prog.split()[-1]).stem + (f"@{item}" if item else "")  # `python stages/align.py` -> align
    resume.STAGE = stage
    try:
        params_bytes = _read_bytes(args.params)
        params = load_params(args.params)
        params.check_here(args.params)
        for flag, template in (templates or {}).items():
            dest = flag[2:].replace("-", "_")
            if getattr(args, dest) is None:
                setattr(args, dest, resolve(template, params, item))
        if (distributed is not None and distributed(params) and params.base.num_processes > 1
                and "LOCAL_RANK" not in os.environ):
            return launch(sys.argv[0], argv, params.base.num_processes, params.base.accelerate_config)
        t0 = time.perf_counter()
        log.info("%s: start", stage)
        with stage_outputs():  # every output lands together, after the last write, or none does
            main(args, params)
            # DVC records params.yaml as it is when the stage ends: edited meanwhile, dvc.lock would pair the new
            # values with outputs of the old ones, and the run cache would serve them to a later run of the new.
            if _read_bytes(args.params) != params_bytes:
                raise ParamsError(f"{args.params}: changed while {stage} ran, so its outputs would be recorded "
                                  "under params they were not made with; nothing written: run it again")
        log.info("%s: done in %.1f s", stage, time.perf_counter() - t0)
    except (DataError, ParamsError, LeakageError, FileNotFoundError, ValueError) as e:
        if os.environ.get("WEAKALIGN_DEBUG"):
            raise
        print(f"{stage}: error: {e}\n(set WEAKALIGN_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC or os.environ.get("WEAKALIGN_DEBUG"):
            raise
        # stage_outputs has discarded every output written so far, freeing what it can
        print(f"{stage}: error: the disk is full ({e.filename or 'while writing'}); none of its outputs were "
              "written: free some space and run it again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if os.environ.get("WEAKALIGN_DEBUG"):
            raise
        # Ctrl-C: one line instead of torch's traceback. stage_outputs has discarded every output; a training stage's
        # last checkpoint stays, and the rerun resumes from it only if its inputs and params are the same.
        ckpt = getattr(args, "checkpoints", None)
        print(f"{stage}: interrupted; none of its outputs were written. `dvc repro` runs it again"
              + (f", resuming from its last checkpoint in {ckpt} if there is one" if ckpt else ""), file=sys.stderr)
        return 130
    finally:
        _close_process_group()
    return 0


def _close_process_group() -> None:
    """Under `accelerate launch`, close the process group the trainer opened before the interpreter exits: a rank
    that exits with it open can abort in teardown, gloo's worker threads outliving Python ("terminate called without
    an active exception", SIGABRT; pytorch/pytorch#179291), failing a stage whose work was done. torch is looked up,
    not imported: a stage that never loaded it has no group."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _read_bytes(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None  # load_params says what is wrong with it


def launch(script: str, argv: list[str], num_processes: int, config_file: str | None) -> int:
    """`accelerate launch` the stage script with the same arguments in `num_processes` processes (DDP).

    Without a config file, accelerate's multi-GPU launcher (torchrun) starts them; each process's Trainer then
    picks NCCL on GPUs or gloo on CPU (`use_cpu`). A config file (`base.accelerate_config`, e.g. DeepSpeed ZeRO)
    sets everything else; the process count comes from params either way.
    """
    import socket
    import subprocess

    with socket.socket() as s:  # a free port for the rendezvous, so that parallel queued runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--main_process_port", str(port),
           *(["--config_file", config_file] if config_file else
             ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]),
           script, *argv]
    log.info("launching %d processes: %s", num_processes, " ".join(cmd))
    return subprocess.call(cmd)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (transformers' `set_seed` does all three)."""
    from transformers import set_seed

    set_seed(seed)


def console(argv: list[str] | None = None) -> int:
    """The `weakalign` command: `weakalign check [FILE ...]` (validate params files), `weakalign preset NAME` (a
    preset as one DVC experiment: `python -m weakalign.preset`), `weakalign study ...` (`python -m weakalign.study`),
    `weakalign aggregate ...` (`python -m weakalign.aggregate`). The pipeline itself runs through `dvc repro` /
    `make repro`."""
    commands = {"check": "weakalign.config.params", "preset": "weakalign.preset", "study": "weakalign.study",
                "aggregate": "weakalign.aggregate"}
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from weakalign import __version__

        print(f"weakalign {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: weakalign {check,preset,study,aggregate} [args ...] | --version\n\n" + (console.__doc__ or ""))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(commands[argv[0]]).main(argv[1:])
