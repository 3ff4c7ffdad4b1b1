"""Unit-test isolation: no CONVEYOR_* variable from the developer's shell leaks into a test,
and structlog goes back to its defaults after a test that configured it."""

from __future__ import annotations

import os

import pytest
import structlog


@pytest.fixture(autouse=True)
def clean_conveyor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def reset_structlog():
    yield
    structlog.reset_defaults()
