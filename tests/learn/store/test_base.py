from __future__ import annotations

import pytest

from edge_personalizer.learn.store.base import MAX_TABLE_BYTES, check_table


@pytest.mark.parametrize("name", ["weights", "bandit:hero-test.v2", "a" * 100])
def test_table_names_a_store_can_hold_as_one_key(name: str) -> None:
    check_table(name, b"{}")


@pytest.mark.parametrize("name", ["", "with space", "a/b", "a" * 101, "ünïcode"])
def test_other_table_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        check_table(name, b"{}")


def test_tables_are_small() -> None:
    check_table("model", b"x" * MAX_TABLE_BYTES)
    with pytest.raises(ValueError, match="at most 1048576 bytes"):
        check_table("model", b"x" * (MAX_TABLE_BYTES + 1))
