"""Where the workers of one server keep their metrics, so that /metrics answers for all of them
(prometheus-client's multiprocess mode, observability/metrics.py).

Apart from metrics.py so that the run command, which only sets the folder up, does not import
FastAPI and prometheus-client before it starts uvicorn.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


@contextlib.contextmanager
def shared_metrics_folder(workers: int) -> Iterator[None]:
    """With several workers, a folder in which they all keep their metrics:
    PROMETHEUS_MULTIPROC_DIR if the operator set one (then whatever the worker count, emptied
    first: files of an earlier run would be summed in), else a temporary one."""
    configured = multiprocess_dir()
    if configured is not None:
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="taskapi-metrics-") as folder:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]
