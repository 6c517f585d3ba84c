"""What the labeler stages (label_weak, label_rm, label_judge) write alike: the response-1 share and the labeling
cost in their metrics files, and a switched-off labeler's outputs. Light on purpose (no torch): a switched-off
stage finishes in about a second."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from weakalign.records import resume
from weakalign.records.io import write_metrics, write_records


def label_1_share(labels: Sequence) -> float | None:
    """The share of labels that pick response 1; None without labels."""
    return round(sum(x.label == 1 for x in labels) / len(labels), 4) if labels else None


def cost(seconds: float, tflops: float, n_pairs: int) -> dict:
    """The labeling-cost keys of a labeler's metrics: wall time, and wall time and estimated forward TFLOPs per
    1,000 pairs, so that report compares labelers of any data size."""
    return {"label_seconds": round(seconds, 1), "label_seconds_per_1000_pairs": round(1000 * seconds / n_pairs, 1),
            "label_tflops_per_1000_pairs": round(1000 * tflops / n_pairs, 2)}


def switched_off(name: str, out: str, metrics: str, checkpoints: str, keys: Iterable[str]) -> None:
    """The outputs of labeler stage `name` when it is not enabled: a labels folder holding only a README that says so,
    and metrics with `enabled: false` and every other key null, the same keys as when it runs."""
    write_records(out, None, f"No labels: `{name}.enabled` is false in params.yaml, so the {name} stage labeled "
                             "nothing.")
    write_metrics(metrics, {"enabled": False, **dict.fromkeys(keys)})
    resume.finish(checkpoints)
