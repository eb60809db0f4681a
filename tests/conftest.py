"""Shared pytest setup: print the corpus agreement table at the end of the run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    try:
        from tests.test_corpus import agreement_table
    except ImportError:
        return
    lines = agreement_table()
    if lines:
        terminalreporter.section("corpus agreement")
        for line in lines:
            terminalreporter.write_line(line)
