"""The real broker (`python -m pstream serve`) as a test fixture: started on 127.0.0.1 with a
temporary data directory, a free Kafka port and a free admin HTTP port, for tests that drive it
with real Kafka clients over real sockets and read its admin API and metrics over real HTTP.

The fixtures are defined here once; the conftest.py of each folder that uses them (integration,
admin) puts this folder on sys.path and imports them, so pytest finds them there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """One broker subprocess; restartable on the same data directory and ports (Kafka, and
    the admin HTTP API at `admin_url`)."""

    def __init__(self, data_dir: str, *extra: str, env: dict | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.admin_port = free_port()
        self.extra = list(extra)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"broker-{self.port}.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
        env.update(self.env or {})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "pstream", "serve", "--listen", self.bootstrap, "--data-dir", self.data_dir,
             "--admin-listen", f"127.0.0.1:{self.admin_port}", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.path.dirname(self.data_dir))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the broker did not listen on {self.bootstrap} within {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stops the broker (SIGTERM: clean shutdown; SIGKILL: a crash); returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the broker ignored {signal.Signals(sig).name} for {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> BrokerProcess:
        self.stop(sig)
        return self.start()

    def output(self, last: int = 20000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-last:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def broker_factory(tmp_path):
    """broker_factory(*flags) -> a started BrokerProcess; all are stopped at teardown."""
    started: list[BrokerProcess] = []

    def make(*extra: str, env: dict | None = None, data_dir: str | None = None) -> BrokerProcess:
        path = data_dir or str(tmp_path / f"data{len(started)}")
        b = BrokerProcess(path, *extra, env=env).start()
        started.append(b)
        return b

    yield make
    for b in started:
        code = b.stop()
        # A clean shutdown must succeed; a broker that crashed during the test fails it here.
        assert code in (0, -signal.SIGKILL), f"broker exited with {code}:\n{b.output()}"
        assert_no_lost_exceptions(b.output(last=1 << 30))


# What CPython and asyncio print for an exception no one could catch or no one looked at.
LOST_EXCEPTION_MARKERS = ("Exception ignored in", "Task exception was never retrieved",
                          "exception was never retrieved", "was never awaited")


def assert_no_lost_exceptions(output: str) -> None:
    """Fails on an unraisable exception, an unretrieved task exception or a coroutine never
    awaited in the broker's output: each is a bug even when the clients saw nothing wrong."""
    lost = [line for line in output.splitlines() if any(m in line for m in LOST_EXCEPTION_MARKERS)]
    assert not lost, f"the broker lost exceptions: {lost[:3]}\n{output[-20000:]}"


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    return broker_factory()


@pytest.fixture
def kcat_path() -> str:
    """kcat's path. Skipped where it is not installed, unless PSTREAM_TEST_REQUIRE_KCAT=1
    (as .ci/run sets, after installing it): then its absence fails the test."""
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        if os.environ.get("PSTREAM_TEST_REQUIRE_KCAT") == "1":
            pytest.fail("kcat is required here (PSTREAM_TEST_REQUIRE_KCAT=1) but is not installed")
        pytest.skip("kcat is not installed (apt-get install kcat); .ci/run installs it")
    return path
