"""The admin package reads a narrow view of the node (pstream/admin/view.py), never the broker:
it imports nothing from pstream.broker, and the broker's adapter offers every member of the
view."""

from __future__ import annotations

import inspect
import subprocess
import sys

from pstream.admin.view import NodeView
from pstream.broker.admin_view import BrokerAdminView


def test_the_admin_package_imports_nothing_of_the_broker() -> None:
    code = ("import sys, pstream.admin.api, pstream.admin.http, pstream.admin.memory, pstream.admin.metrics, "
            "pstream.admin.view; print(sorted(m for m in sys.modules if m.startswith('pstream.broker')))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_broker_adapter_offers_every_member_of_the_view() -> None:
    wanted = set(NodeView.__annotations__) | {name for name, _ in inspect.getmembers(NodeView)
                                              if not name.startswith("_")}
    offered = {name for name, _ in inspect.getmembers(BrokerAdminView) if not name.startswith("_")}
    assert wanted <= offered, wanted - offered
