"""Log capture from the real stdout, for the tests of core/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.observability.logging import configure_logging
from tests.conftest import LogOutput


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    # Set up before capsys and so torn down after it: the handler goes back onto pytest's own
    # capture instead of keeping capsys's closed stream.
    yield
    configure_logging()


@pytest.fixture
def log_output(_restore_logging: None, capsys: pytest.CaptureFixture[str]) -> LogOutput:
    """JSON logging configured onto the captured stdout (an app created in the test
    reconfigures it, onto the same stream)."""
    configure_logging("INFO", "json")
    return LogOutput(capsys)
