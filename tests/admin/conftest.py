"""Fixtures of the admin API tests: the real broker of the integration tests (`broker`,
`broker_factory`, defined once in tests/integration/broker_process.py), whose admin HTTP API
is at `broker.admin_url`.

Puts tests/integration (the broker fixture, `kafka_wire`) and this folder (`admin_http`) on
sys.path, so they import by name although pytest runs with --import-mode=importlib.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
for folder in (INTEGRATION, HERE):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from broker_process import BrokerProcess, broker, broker_factory, free_port  # noqa: F401
