"""The chaos suite: kill -9 loops, armed fault points, hostile connections and decompression
bombs, each asserting that nothing acknowledged is lost, that a well-behaved client keeps
being served and that memory stays within budget. Each test has a short version that always
runs; the long ones are marked slow (PSTREAM_TEST_SLOW=1 or -m slow, see tests/conftest.py).
Tests that need root (mounts) skip without it.

Puts tests/integration (the broker fixtures, `kafka_wire`, `raw_kafka`) and tests/storage
(`crash_writer`) on sys.path, so they import by name under --import-mode=importlib.
"""

from __future__ import annotations

import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in (os.path.join(TESTS, "integration"), os.path.join(TESTS, "storage")):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from broker_process import broker, broker_factory  # noqa: E402,F401  (fixtures for the tests here)
