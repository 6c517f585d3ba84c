"""The feedback sources: what each one is and how it labels a D_u pair. The one home of a source's facts.

A feedback source is a way of choosing the preferred response of every D_u pair; `align@<source>` trains a target
on its labels. Every module that needs to know something about a source asks here: params (which names are valid,
which need a gold judge or another labeler), compare (the labels), the study (which arms calibrate the instrument,
which is the floor) and the report (the order of the bars).

Where a new source goes: one `Source(...)` entry in REGISTRY with its label rule (a function of the pair and the
`Context`). `noisy_gold_NN` is a family, built by `get`. Nothing else needs to change for `align.sources` to accept
it, for compare to write its labels and for the report and the study to place it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from weakalign.records.schema import Pair, WeakLabel

SKIP = object()  # a rule's answer for a pair the source leaves out (a gold tie, a judge tie, a subset's outsider)


@dataclass(frozen=True)
class Context:
    """What a label rule may read besides the pair: the weak teacher's labels, the other labelers' labels
    (pair id -> 1, 2, or None for a judge tie), the seed, the gold labels this source inverts, and
    `compare.confident_margin`."""
    weak: dict[str, WeakLabel]
    seed: int
    others: dict[str, dict[str, int | None]] = field(default_factory=dict)
    flips: frozenset[str] = frozenset()
    confident_margin: float = 0.0


Rule = Callable[[Pair, Context], "int | None | object"]  # 1, 2, SKIP, or None (a label the pair should have had)


@dataclass(frozen=True)
class Source:
    name: str
    rule: Rule
    doc: str
    accuracy: float | None = None   # its label accuracy against gold where set by construction: a calibration arm
    flip_rate: float | None = None  # the share of gold labels it inverts (the calibration arms built on gold)
    labeler: str | None = None      # the labeler stage besides the teacher it reads (`label_<labeler>.enabled`)
    bar: int | None = None          # its place among the report's leading bars (after the base), if it has one

    @property
    def calibration(self) -> bool:
        """An arm of the instrument's calibration: its label accuracy is known without measuring it."""
        return self.accuracy is not None

    @property
    def needs_gold(self) -> bool:
        return self.flip_rate is not None

    @property
    def floor(self) -> bool:
        """Labels that carry no information (a coin) or the wrong one (inverted gold)."""
        return self.accuracy is not None and self.accuracy <= 0.5

    @property
    def on_line(self) -> bool:
        """A point of the calibration line, gold reward on label accuracy from the coin (0.5) to gold (1.0), that an
        arm's effective accuracy is read off; `flipped` (0) lies outside the range an arm is compared in."""
        return self.accuracy is not None and self.accuracy >= 0.5


def _gold(p: Pair, c: Context):
    if p.gold is None:  # exact gold tie or no gold judge: nothing to learn from this pair
        return SKIP
    return 3 - p.gold if p.id in c.flips else p.gold


def _weak_disagree(p: Pair, c: Context):
    return SKIP if c.weak[p.id].label == p.human else c.weak[p.id].label


def _weak_confident(p: Pair, c: Context):
    return SKIP if abs(c.weak[p.id].margin) < c.confident_margin else c.weak[p.id].label


def _other(name: str) -> Rule:
    def rule(p: Pair, c: Context):
        chosen = c.others[name][p.id]
        return SKIP if chosen is None else chosen  # a judge tie (or a prompt too long to judge): nothing to learn
    return rule


REGISTRY: dict[str, Source] = {s.name: s for s in (
    Source("human", lambda p, c: p.human, "the simulated (or real) human labels", bar=1),
    Source("weak", lambda p, c: c.weak[p.id].label, "the weak teacher's labels, by its implicit reward", bar=2),
    Source("gold", _gold, "the gold judge's own labels, the ceiling", accuracy=1.0, flip_rate=0.0, bar=3),
    Source("random", lambda p, c: random.Random(f"random:{c.seed}:{p.id}").choice((1, 2)),
           "coin flips, the floor", accuracy=0.5, bar=4),
    Source("flipped", _gold, "every gold label inverted", accuracy=0.0, flip_rate=1.0, bar=5),
    Source("weak_disagree", _weak_disagree, "only the D_u pairs where weak and human disagree, with the weak label "
           "(the paper's purification check)"),
    Source("weak_confident", _weak_confident, "weak labels with |margin| >= `compare.confident_margin`"),
    Source("rm", _other("rm"), "a reward model's labels (needs `label_rm.enabled`)", labeler="rm"),
    Source("judge", _other("judge"), "a pairwise LLM judge's labels (needs `label_judge.enabled`; ties are left out)",
           labeler="judge"),
)}
NOISY_GOLD = re.compile(r"noisy_gold_([1-9][0-9]?)")
LABELERS = tuple(s.labeler for s in REGISTRY.values() if s.labeler)  # labelers beside the weak teacher


def lookup(name: str) -> Source | None:
    """The source called `name`: a registry entry, or `noisy_gold_NN` (the gold labels with NN% of them inverted,
    a set label accuracy for the dose-response curve); None for any other name (the study's `weak@<teacher>`)."""
    if name in REGISTRY:
        return REGISTRY[name]
    m = NOISY_GOLD.fullmatch(name)
    if m:
        rate = int(m.group(1)) / 100
        return Source(name, _gold, f"the gold labels with {m.group(1)}% of them inverted", accuracy=1 - rate,
                      flip_rate=rate)
    return None


def get(name: str) -> Source:
    """`lookup`, with a ValueError naming the valid sources for an unknown name."""
    source = lookup(name)
    if source is not None:
        return source
    raise ValueError(f"unknown feedback source {name!r}: one of {', '.join(REGISTRY)}, or noisy_gold_NN "
                     "(gold labels with NN% flipped, NN from 1 to 99)")


def check(name: str) -> str:
    get(name)
    return name


def is_calibration(name: str) -> bool:
    source = lookup(name)
    return source is not None and source.calibration


def on_line(name: str) -> bool:
    source = lookup(name)
    return source is not None and source.on_line


def rank(name: str, names: list[str]) -> tuple:
    """Sort key of the report's bars among `names`: the base, the paper's two arms, the ceiling and the floors
    (`bar`), then noisy_gold_NN by rate, then the rest as given."""
    if name == "base":
        return (0, 0)
    source = lookup(name)
    if source is not None and source.bar is not None:
        return (0, source.bar)
    if source is not None and source.flip_rate is not None:
        return (1, source.flip_rate)
    return (2, names.index(name))


def table_order(names: list[str]) -> list[str]:
    """The study's table and figure order: the ceiling, the arms under study, the weak teachers (`weak@<name>`),
    the other sources, then the calibration doses by falling accuracy and the floors."""
    def key(name: str) -> tuple:
        source = lookup(name)
        if source is not None and source.accuracy == 1.0:  # the ceiling
            return (0, 0)
        if source is not None and source.bar is not None and not source.calibration:
            return (0, source.bar)
        if name.startswith("weak@"):
            return (1, name)
        if source is None or not source.calibration:
            return (2, names.index(name))
        return (4 if source.floor else 3, -source.accuracy)
    return sorted(names, key=key)


def describe() -> str:
    """`align.sources`' description, from the registry."""
    return "Feedback sources to align a target on (weakalign.config.feedback): " + "; ".join(
        f"`{s.name}` ({s.doc})" for s in REGISTRY.values()) + "; `noisy_gold_NN` (the gold labels with NN% of them " \
        "inverted, a set label accuracy for the dose-response curve)."
