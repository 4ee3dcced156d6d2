from __future__ import annotations

import logging

import pytest

from edge_personalizer.personalize.fail_open import FailOpen
from edge_personalizer.rules.model import Decision


class Counting:
    """An Observer that keeps the stages that failed (not a NoObserver subclass: that class
    runs compiled, and compiled classes take no interpreted subclasses)."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def stage_failed(self, stage: str) -> None:
        self.failed.append(stage)

    def origin_failed(self, kind: str) -> None:
        pass

    def personalization_took(self, seconds: float) -> None:
        pass

    def decided(self, decision: Decision) -> None:
        pass

    def bot_seen(self, category: str) -> None:
        pass


def test_an_error_in_a_stage_is_logged_counted_and_contained(
        caplog: pytest.LogCaptureFixture) -> None:
    observer = Counting()
    with FailOpen(observer).stage("rewrite", "/page") as outcome:
        raise ValueError("a bug")
    assert outcome.failed
    assert observer.failed == ["rewrite"]
    assert any(r.levelno == logging.ERROR and "/page" in r.getMessage() for r in caplog.records)


def test_a_stage_without_error_is_not_failed() -> None:
    observer = Counting()
    with FailOpen(observer).stage("decide", "/") as outcome:
        pass
    assert not outcome.failed and observer.failed == []


def test_cancellation_is_never_contained() -> None:
    import asyncio

    with pytest.raises(asyncio.CancelledError):
        with FailOpen(Counting()).stage("decide", "/"):
            raise asyncio.CancelledError


def test_a_failed_stage_logs_the_client_s_path_escaped(
        caplog: pytest.LogCaptureFixture) -> None:
    # The path was logged raw: %0a began a forged line of the text log, %1b reached the
    # terminal.
    with FailOpen(Counting()).stage("rewrite", '/a\nFAKE\x1b[2J"'):
        raise ValueError("a bug")
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "/a\\x0aFAKE\\x1b[2J\\x22" in message, message
