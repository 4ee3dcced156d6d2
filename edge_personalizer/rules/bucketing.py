"""Stable buckets: the same (name, visitor id) gives the same number on every instance."""

from __future__ import annotations

import hashlib


def bucket(name: str, visitor_id: str) -> float:
    """A number in [0, 1) from a hash of the experiment (or rule) name and the visitor id."""
    digest = hashlib.blake2b(f"{name}\0{visitor_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(weights: tuple[tuple[str, float], ...], point: float) -> str:
    """The entry whose share of the total weight contains `point` (in [0, 1))."""
    total = sum(weight for _, weight in weights)
    running = 0.0
    for name, weight in weights:
        running += weight / total
        if point < running:
            return name
    return weights[-1][0]
