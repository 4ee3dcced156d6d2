from __future__ import annotations

import edge_personalizer


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(edge_personalizer) if not name.startswith("_")}
    modules = {name for name in public
               if type(getattr(edge_personalizer, name)).__name__ == "module"}
    assert edge_personalizer.__all__ == sorted(edge_personalizer.__all__)
    assert set(edge_personalizer.__all__) == public - modules
