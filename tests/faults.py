"""Faults injected where the product meets a library (lol-html, the decompressors): the
product's own modules run compiled, and a compiled call cannot be patched from a test."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest


class Watch:
    """What became of the objects a library factory made while watched: the calls to
    the watched method each got (in the order they were made), and which were freed."""

    def __init__(self, method: str, fail_at: int | None) -> None:
        self.method = method
        self.fail_at = fail_at
        self.calls: list[int] = []
        self.freed: list[int] = []   # the index of each object freed, in turn


class Watched:
    """A library object, its calls to the watched method counted; from call `fail_at`
    on (if given), they raise ValueError("a bug") instead, as a bug of ours would. The
    test keeps no reference to it: when it is freed is for the product to say."""

    def __init__(self, real: Any, watch: Watch) -> None:
        self.real = real
        self.watch = watch
        self.index = len(watch.calls)
        watch.calls.append(0)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name != self.watch.method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            calls = self.watch.calls
            calls[self.index] += 1
            if self.watch.fail_at is not None and calls[self.index] >= self.watch.fail_at:
                raise ValueError("a bug")
            return attribute(*args, **kwargs)

        return call

    def __del__(self) -> None:
        self.watch.freed.append(self.index)


def watch(monkeypatch: pytest.MonkeyPatch, module: ModuleType, factory: str, method: str,
          *, fail_at: int | None = None) -> Watch:
    """Every object `module.factory(...)` makes from now on comes Watched."""
    record = Watch(method, fail_at)
    real = getattr(module, factory)

    def make(*args: Any, **kwargs: Any) -> Watched:
        return Watched(real(*args, **kwargs), record)

    monkeypatch.setattr(module, factory, make)
    return record
