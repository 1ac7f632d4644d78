"""Rules for the whole suite.

- Long fault tests (`@pytest.mark.slow`: crash loops, long chaos runs) run when asked for,
  with PSTREAM_TEST_SLOW=1 or `-m slow`; each has a short version that always runs.
- Descriptors a test module leaves open fail it: after the module's own fixtures are torn
  down and the cyclic collector has run, every descriptor the module opened must be closed.
- Unraisable exceptions fail the test that saw them (pyproject.toml's filterwarnings), and
  the broker fixtures fail on exceptions lost in the broker's output (broker_process.py).
"""

from __future__ import annotations

import gc
import os

import pytest

SLOW_ENV = "PSTREAM_TEST_SLOW"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SLOW_ENV) == "1" or "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=f"long fault test: {SLOW_ENV}=1 or -m slow runs it (a short version runs always)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session):
    """libuv opens a process-wide pipe the first time any uvloop loop watches a signal, and keeps
    it for the life of the process: open it before any module's descriptors are counted."""
    import signal

    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR2)
    finally:
        loop.close()


def _open_descriptors() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:   # the descriptor listdir itself used, closed meanwhile
            pass
    return out


@pytest.fixture(scope="module", autouse=True)
def no_leaked_descriptors():
    """Set up first and torn down last for each module: what it opened, it must close."""
    before = _open_descriptors()
    yield
    gc.collect()
    leaked = {fd: target for fd, target in _open_descriptors().items() if before.get(fd) != target}
    assert not leaked, f"descriptors left open by this module: {sorted(leaked.items())[:10]}"
