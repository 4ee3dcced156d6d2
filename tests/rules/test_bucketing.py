from __future__ import annotations

from collections import Counter

from edge_personalizer.rules.bucketing import bucket, pick


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("exp", "visitor-1") == bucket("exp", "visitor-1")
    assert bucket("exp", "visitor-1") != bucket("other", "visitor-1")
    counts = Counter(int(bucket("exp", f"v{i}") * 10) for i in range(20000))
    assert all(1700 < n < 2300 for n in counts.values()) and len(counts) == 10


def test_pick_follows_weights() -> None:
    weights = (("a", 1.0), ("b", 3.0))
    assert pick(weights, 0.2) == "a" and pick(weights, 0.3) == "b"
    assert pick(weights, 0.999999) == "b"
