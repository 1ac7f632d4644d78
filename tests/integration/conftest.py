"""Fixtures of the integration tests: the real broker (`broker`, `broker_factory`, see
broker_process.py) and `kcat_path`.

Also puts this folder on sys.path, so tests import the raw-socket helpers (`kafka_wire`,
`raw_kafka`) by name although pytest runs with --import-mode=importlib.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from broker_process import BrokerProcess, broker, broker_factory, free_port, kcat_path, shared_broker  # noqa: F401
