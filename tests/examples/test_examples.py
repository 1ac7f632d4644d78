"""The examples in examples/ run, as a user would run them (so they cannot rot)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def _run(args, cwd, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PSTREAM_", "PYTEST_"))}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited with {proc.returncode}:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_event_sourcing_example_resumes_after_a_restart(tmp_path):
    script = os.path.join(EXAMPLES, "event_sourcing.py")
    first = _run([sys.executable, "-P", script, str(tmp_path / "ledger")], tmp_path)
    assert "balances {'ada': 70, 'bob': 20}; bob's overdraft refused: True" in first
    second = _run([sys.executable, "-P", script, str(tmp_path / "ledger")], tmp_path)   # state survives
    assert "balances {'ada': 140, 'bob': 40}" in second


def test_serve_embedded_example(tmp_path):
    out = _run([sys.executable, "-P", os.path.join(EXAMPLES, "serve_embedded.py")], tmp_path)
    assert "a Kafka consumer read 100 readings; the service received [b'recalibrate']" in out


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_the_kafka_app_example_tests_pass_on_pstream_testing(mode):
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--pstream-broker={mode}"],
               os.path.join(EXAMPLES, "kafka_app"))
    assert "3 passed" in out
