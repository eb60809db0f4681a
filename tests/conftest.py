"""Shared pytest setup: Hypothesis profiles; print the corpus agreement table at the end of the run."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

# ci (the default): deterministic, a test suite that stays within a minute for the
# property tests; long: ``HYPOTHESIS_PROFILE=long python3 -m pytest tests/test_properties.py``.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
