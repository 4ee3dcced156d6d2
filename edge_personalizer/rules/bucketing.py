"""Stable buckets: the same (name, visitor id) gives the same number on every instance.

An experiment places a visitor twice, from two independent hashes of their id: under the
experiment's own name (held out or not) and under `variant_key` (which variant the weights
give them). A change of the holdout share then moves no one's variant point: the visitors
a lower holdout releases are shared out by the weights like everyone else.
"""

from __future__ import annotations

import hashlib


def bucket(name: str, visitor_id: str) -> float:
    """A number in [0, 1) from a hash of the experiment (or rule) name and the visitor id."""
    digest = hashlib.blake2b(f"{name}\0{visitor_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def variant_key(experiment: str) -> str:
    """The name an experiment's variant point is hashed under: `variant:<experiment>`
    (a rule or experiment name has no colon, so it is no other bucket's name)."""
    return f"variant:{experiment}"


def pick(weights: tuple[tuple[str, float], ...], point: float) -> str:
    """The entry whose share of the total weight contains `point` (in [0, 1))."""
    total = sum(weight for _, weight in weights)
    running = 0.0
    for name, weight in weights:
        running += weight / total
        if point < running:
            return name
    return weights[-1][0]
