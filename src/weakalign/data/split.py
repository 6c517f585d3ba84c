"""Splits by prompt id: held-out test prompts, then D_l (labeled) and D_u (unlabeled) pairs.

`check_disjoint` is the leakage guard that `split` runs on every pipeline run: no test prompt (by id or by
normalised text) may occur in D_l or D_u, and no pair or prompt may be in both D_l and D_u.
"""

from __future__ import annotations

import random

from weakalign.records.io import DataError
from weakalign.records.schema import Pair, Prompt, normalise


class LeakageError(ValueError):
    pass


def check_unique(numbered: list[tuple[int, Prompt]], path: str) -> None:
    """No two prompts may share an id, or a text up to case and spacing: a duplicate could land on both sides of
    the holdout and leak test prompts into training."""
    ids: dict[str, int] = {}
    texts: dict[str, tuple[str, int]] = {}
    for lineno, p in numbered:
        if p.id in ids:
            raise DataError(f"{path}:{lineno}: duplicate prompt id {p.id!r} (first on line {ids[p.id]})")
        ids[p.id] = lineno
        key = normalise(p.prompt)
        if key in texts:
            other, line = texts[key]
            raise DataError(f"{path}:{lineno}: prompt {p.id!r} has the same text as {other!r} (line {line}), "
                            "up to case, spacing and look-alike characters")
        texts[key] = (p.id, lineno)


def holdout(prompts: list[Prompt], n_test: int, seed: int,
            n_train: int | None = None) -> tuple[list[Prompt], list[Prompt]]:
    """(train, test): `n_test` prompts drawn at random, then `n_train` of the rest (all if None) for training.

    Both keep the file's order."""
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate prompt id {dup!r}")
    if n_test >= len(prompts):
        raise ValueError(f"holdout.n_test={n_test} leaves no training prompts out of {len(prompts)}")
    rng = random.Random(f"holdout:{seed}")
    test_ids = set(rng.sample(ids, n_test))
    rest = [i for i in ids if i not in test_ids]
    if n_train is not None and n_train > len(rest):
        raise ValueError(f"holdout.n_train={n_train} but only {len(rest)} prompts remain after n_test={n_test}")
    train_ids = set(rng.sample(rest, n_train)) if n_train is not None else set(rest)
    return [p for p in prompts if p.id in train_ids], [p for p in prompts if p.id in test_ids]


def split(pairs: list[Pair], n_labeled: int, n_unlabeled: int | None, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(D_l, D_u), disjoint by prompt id, drawn at random from the pairs (both in the pairs' order).

    One seeded order of the prompts serves both sides from opposite ends: D_u fills from its front, D_l from its
    back. So with `n_unlabeled` set, D_u does not depend on `n_labeled`, and a smaller D_l is a subset of a larger
    one: a label-fraction sweep changes only what the weak teacher learns from (nested D_l, fixed D_u). Exactly
    so with one pair per prompt (the sandbox); with several, a prompt that would overflow a side is skipped, so
    nesting and exact sizes can fail (the sizes then raise)."""
    by_prompt: dict[str, list[Pair]] = {}
    for p in pairs:
        by_prompt.setdefault(p.prompt_id, []).append(p)
    prompt_ids = sorted(by_prompt)
    random.Random(f"split:{seed}").shuffle(prompt_ids)
    n_pairs = len(pairs)
    want_u = n_unlabeled if n_unlabeled is not None else n_pairs - n_labeled
    if n_labeled + want_u > n_pairs or want_u < 1:
        raise ValueError(f"split.n_labeled={n_labeled} + split.n_unlabeled={n_unlabeled} need "
                         f"{n_labeled + max(want_u, 1)} pairs; there are {n_pairs}")
    taken_u: list[str] = []
    if n_unlabeled is not None:
        taken_u = _fill(prompt_ids, by_prompt, want_u)
    rest = [pid for pid in prompt_ids if pid not in set(taken_u)]
    taken_l = _fill(rest[::-1], by_prompt, n_labeled)
    if n_unlabeled is None:
        taken_u = [pid for pid in rest if pid not in set(taken_l)]
    labeled_ids, unlabeled_ids = set(taken_l), set(taken_u)
    labeled = [p for p in pairs if p.prompt_id in labeled_ids]
    unlabeled = [p for p in pairs if p.prompt_id in unlabeled_ids]
    if len(labeled) != n_labeled or len(unlabeled) != want_u:
        raise ValueError(f"cannot split whole prompts into {n_labeled} labeled and {want_u} unlabeled pairs")
    return labeled, unlabeled


def _fill(order: list[str], by_prompt: dict[str, list[Pair]], n: int) -> list[str]:
    """Prompt ids from the front of `order` whose pairs fill `n` exactly, skipping a prompt that would overflow."""
    taken, size = [], 0
    for pid in order:
        if size + len(by_prompt[pid]) <= n:
            taken.append(pid)
            size += len(by_prompt[pid])
    return taken


def check_disjoint(labeled: list[Pair], unlabeled: list[Pair], test: list[Prompt]) -> None:
    test_ids = {p.id for p in test}
    test_texts = {normalise(p.prompt) for p in test}
    for name, part in (("D_l", labeled), ("D_u", unlabeled)):
        for pair in part:
            if pair.prompt_id in test_ids or normalise(pair.prompt) in test_texts:
                raise LeakageError(f"test prompt {pair.prompt_id!r} occurs in {name} (pair {pair.id!r})")
    overlap = {p.id for p in labeled} & {p.id for p in unlabeled}
    if overlap:
        raise LeakageError(f"pairs in both D_l and D_u: {sorted(overlap)[:5]}")
    overlap = {normalise(p.prompt) for p in labeled} & {normalise(p.prompt) for p in unlabeled}
    if overlap:
        raise LeakageError(f"prompts in both D_l and D_u: {sorted(overlap)[:3]}")


def seeded_share(ids, share: float, key: str) -> frozenset[str]:
    """Exactly round(share * n) of the n ids: a prefix of one order of them, sorted then shuffled by `key`. So a
    set share is hit by construction (a Bernoulli draw per id would add its own noise to a dose-response curve),
    and the picks at 10% are among those at 20%: shares are nested, like doses."""
    order = sorted(ids)
    random.Random(key).shuffle(order)
    return frozenset(order[:round(share * len(order))])


def flip_labels(pairs: list[Pair], share: float, seed: int) -> dict[str, int]:
    """Pair id -> human label of each labeled pair, with `share` of them inverted (`train_weak.label_noise`): the
    weak teacher's supervision made worse while D_u and its labels stay as they are. No flip at share 0."""
    flips = seeded_share((p.id for p in pairs if p.human is not None), share, f"label_noise:{seed}") if share else ()
    return {p.id: 3 - p.human if p.id in flips else p.human for p in pairs if p.human is not None}
