"""Fixtures of the storage tests: logs opened in a per-test directory and closed afterwards.

Also puts this directory on sys.path, so the tests import their helpers (`segment_files`,
`crash_writer`) the same way whether pytest runs from the checkout (`python -m pytest`)
or with the safe path against an installed package (`python -P -m pytest`, as CI does).
"""

from __future__ import annotations

import faulthandler
import logging
import sys
from pathlib import Path
from typing import Callable

import pytest

import pstream

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def hang_watchdog(request: pytest.FixtureRequest):
    """A deadlock in the engine must end the run with every thread's stack, not hang it (or CI)."""
    faulthandler.dump_traceback_later(600 if request.node.get_closest_marker("slow") else 180, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def no_fault_left_armed():
    """A fault test that fails before it disarms must not fail every test after it."""
    yield
    pstream._core.disarm_faults()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_log(data_dir: Path) -> Callable[..., pstream.Log]:
    """Opens a Log (default: `data_dir`, one shard); every log it opened is closed at teardown."""
    opened: list[pstream.Log] = []

    def _open(path: Path | None = None, **settings) -> pstream.Log:
        settings.setdefault("shards", 1)
        log = pstream.Log(path or data_dir, **settings)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


@pytest.fixture
def storage_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Returns a function listing the warnings logged by pstream.storage so far."""
    caplog.set_level(logging.WARNING, logger="pstream.storage")

    def _messages() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "pstream.storage" and r.levelno >= logging.WARNING]

    return _messages
