"""pstream.testing: a real Kafka-compatible broker for a project's pytest suite, no Docker.

Installed with pstream as a pytest plugin (entry point `pytest11`), so a project's tests just
ask for the fixtures:

    def test_orders_round_trip(kafka_bootstrap, kafka_topic):
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(kafka_topic, b"order-1")
        ...

Fixtures
  kafka_broker          one broker for the whole session (shared, as asyncpg's tests share a
                        cluster): `.bootstrap`, `.create_topic(...)`, `.data_dir`; in-process
                        (`.log` is its pstream.Log) or a subprocess, see "Mode" below
  kafka_bootstrap       its "host:port", for bootstrap.servers
  kafka_topic           a topic of its own for each test (1 partition), created before it runs
  kafka_topic_factory   make(partitions=1, **configs) -> a new topic name (Kafka config names
                        with dots or underscores: cleanup_policy="compact")
  kafka_group_id        a consumer group id of its own for each test
  kafka_broker_factory  start(**settings) -> a broker of the test's own, stopped after it (for
                        tests that restart, kill or reconfigure one)
  kafka_broker_settings the settings every broker here starts with: override this fixture in a
                        conftest.py to change them (names as `pstream serve --help` lists them)

Defaults suit tests: groups rebalance at once (group_initial_rebalance_delay_ms=0), data in a
temporary directory that goes with the session, 127.0.0.1 on a port the OS picks.

Mode: `inprocess` (the default: a pstream.Log served from a thread of the test process, ready
in well under a second) or `subprocess` (`python -m pstream serve`: a crash or kill -9 of the
broker cannot take the tests with it). Choose with `--pstream-broker=subprocess` or the ini
option `pstream_broker = subprocess`.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

DEFAULT_SETTINGS: dict[str, Any] = {"group_initial_rebalance_delay_ms": 0}
MODES = ("inprocess", "subprocess")


def free_port(run: int = 1) -> int:
    """A port free now on 127.0.0.1; with run > 1, the first of that many consecutive free ports
    (`pstream serve --cores N` listens on port + k for core k). A run is taken below the
    ephemeral range: there, port + 1 of a port bind(0) gave (odd, on Linux) is even, the kind
    connect() hands to outgoing connections, and a busy test suite took it within seconds."""
    if run == 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    low = _ephemeral_low()
    while True:
        port = random.randrange(10000, low - run)
        if all(_bindable(port + k) for k in range(run)):
            return port


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _flag(name: str, value: Any) -> list[str]:
    flag = name.replace("_", "-").replace(".", "-")
    if isinstance(value, bool):   # switches: --name / --no-name
        return [f"--{flag}" if value else f"--no-{flag}"]
    return [f"--{flag}", "none" if value is None else str(value)]


class _Topics:
    """Topic creation over the Kafka protocol, the same for both modes."""

    bootstrap: str
    _names = itertools.count()

    def create_topic(self, name: str | None = None, partitions: int = 1, **configs) -> str:
        """Creates a topic (a fresh unique name when none is given); returns its name."""
        from pstream.client import KafkaClient
        name = name or f"test-topic-{os.getpid()}-{next(self._names)}"
        kafka_configs = {key.replace("_", "."): str(value).lower() if isinstance(value, bool) else str(value)
                         for key, value in configs.items()}
        with KafkaClient(self.bootstrap, client_id="pstream-testing") as client:
            client.create_topic(name, partitions, configs=kafka_configs)
        return name


class InProcessBroker(_Topics):
    """A pstream.Log in `data_dir` served from a thread of this process (pstream.serve_in_thread)."""

    mode = "inprocess"

    def __init__(self, data_dir: str, **settings) -> None:
        import pstream
        from pstream.broker.broker import open_log
        from pstream.broker.config import load_config
        from pstream.broker.embedded import LOG_SETTINGS

        self.data_dir = data_dir
        config = load_config({**settings, "data_dir": data_dir, "listen": "127.0.0.1:0", "admin_listen": "off"},
                             env={})
        self.log = open_log(config)
        try:
            served = {k: v for k, v in settings.items() if k not in LOG_SETTINGS and k not in ("listen", "admin_listen")}
            self.handle = pstream.serve_in_thread(self.log, listen="127.0.0.1:0",
                                                  admin_listen=settings.get("admin_listen"), **served)
        except BaseException:
            self.log.close()
            raise
        self.bootstrap = self.handle.bootstrap

    def stop(self) -> None:
        self.handle.close()
        self.log.close()


class _PortTaken(RuntimeError):
    """The broker could not bind a port free_port() had found free."""


class BrokerProcess(_Topics):
    """`python -m pstream serve` as a subprocess: restartable on the same data directory and
    ports (Kafka, and the admin HTTP API at `admin_url`); `kill()` is a crash (SIGKILL)."""

    mode = "subprocess"

    def __init__(self, data_dir: str, *extra: str, env: dict | None = None, listeners: str | None = None,
                 host: str = "127.0.0.1", prefix: tuple[str, ...] = (), **settings) -> None:
        """listeners: "NAME,NAME,..." (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL): one listener each on a
        port of its own (`listener_ports`), the first the one `bootstrap` names; else one PLAINTEXT.
        host: the address it listens on; prefix: what runs the command (`ip netns exec NAME`: a
        network namespace of its own, which then holds the host address)."""
        self.data_dir = data_dir
        self.host = host
        self.prefix = list(prefix)
        self.cores = int(settings.get("cores", 1))   # core k listens on each listener's port + k
        self.listener_names = [n.strip() for n in listeners.split(",")] if listeners else []
        self._pick_ports()
        self.extra = list(extra) + [arg for name, value in settings.items() for arg in _flag(name, value)]
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.served = False   # listened once: its ports are the ones clients know
        self.log_path = os.path.join(os.path.dirname(data_dir), f"broker-{self.port}.log")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        """Starts the broker. free_port() cannot reserve a port: if another process took one
        before the broker bound it, a first start tries again on new ports (a restart keeps
        its ports, which clients know)."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except _PortTaken:
                if self.served or attempt == 2:
                    raise
                self._pick_ports()
        raise AssertionError("unreachable")

    def _pick_ports(self) -> None:
        self.listener_ports = {name: free_port(self.cores) for name in self.listener_names}
        self.port = next(iter(self.listener_ports.values()), None) or free_port(self.cores)
        self.admin_port = free_port()

    def address(self, listener: str) -> str:
        return f"{self.host}:{self.listener_ports[listener]}"

    def _start(self, timeout: float) -> BrokerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
        env.update(self.env or {})
        out = open(self.log_path, "ab")
        if self.listener_ports:
            where = ["--listeners", ",".join(f"{n}://{self.host}:{p}" for n, p in self.listener_ports.items())]
        else:
            where = ["--listen", self.bootstrap]
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-P", "-m", "pstream", "serve", *where, "--data-dir", self.data_dir,
             "--admin-listen", f"{self.host}:{self.admin_port}", *self.extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=os.path.dirname(self.data_dir))
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = _PortTaken if "address already in use" in self.output(2000) else RuntimeError
                raise error(f"the broker exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as probe:
                    # free_port()'s ports are ephemeral ones: with nothing listening yet, a
                    # connect can pick the same port as its source and reach itself.
                    if probe.getsockname() == probe.getpeername():
                        raise OSError("a TCP self-connect, not the broker")
                self.served = True
                return self
            except OSError:
                time.sleep(0.02)
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


# What CPython and asyncio print for an exception no one could catch or no one looked at.
LOST_EXCEPTION_MARKERS = ("Exception ignored in", "Task exception was never retrieved",
                          "exception was never retrieved", "was never awaited")


def assert_no_lost_exceptions(output: str) -> None:
    """Fails on an unraisable exception, an unretrieved task exception or a coroutine never
    awaited in a broker's output: each is a bug even when the clients saw nothing wrong."""
    lost = [line for line in output.splitlines() if any(m in line for m in LOST_EXCEPTION_MARKERS)]
    assert not lost, f"the broker lost exceptions: {lost[:3]}\n{output[-20000:]}"


def start_broker(mode: str, data_dir: str, **settings) -> InProcessBroker | BrokerProcess:
    """A started broker of the given mode on data_dir."""
    if mode == "inprocess":
        return InProcessBroker(data_dir, **settings)
    if mode == "subprocess":
        return BrokerProcess(data_dir, **settings).start()
    raise ValueError(f"pstream broker mode must be one of {', '.join(MODES)}, got {mode!r}")


def stop_broker(broker) -> None:
    if broker.mode == "subprocess":
        code = broker.stop()
        assert code in (0, -signal.SIGKILL), f"the broker exited with {code}:\n{broker.output()}"
        assert_no_lost_exceptions(broker.output(last=1 << 30))
    else:
        broker.stop()


# --- the plugin --------------------------------------------------------------------------------

def pytest_addoption(parser) -> None:
    group = parser.getgroup("pstream", "a pstream broker for Kafka tests (pstream.testing)")
    group.addoption("--pstream-broker", choices=MODES, default=None,
                    help="run the test broker in this process (inprocess, the default) or as a subprocess")
    parser.addini("pstream_broker", "inprocess or subprocess: where the test broker runs", default="inprocess")


def _mode(config) -> str:
    return config.getoption("--pstream-broker") or config.getini("pstream_broker") or "inprocess"


@pytest.fixture(scope="session")
def kafka_broker_settings() -> dict[str, Any]:
    """The settings of every broker these fixtures start; override in a conftest.py."""
    return dict(DEFAULT_SETTINGS)


@pytest.fixture(scope="session")
def kafka_broker(request, kafka_broker_settings):
    """One broker shared by the session's tests."""
    data_root = tempfile.mkdtemp(prefix="pstream-test-")
    broker = start_broker(_mode(request.config), os.path.join(data_root, "data"), **kafka_broker_settings)
    try:
        yield broker
    finally:
        try:
            stop_broker(broker)
        finally:
            shutil.rmtree(data_root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


def _test_name(request) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]


@pytest.fixture
def kafka_topic_factory(request, kafka_broker):
    names = itertools.count()

    def make(partitions: int = 1, **configs) -> str:
        return kafka_broker.create_topic(f"{_test_name(request)}-{next(names)}-{os.urandom(3).hex()}",
                                         partitions, **configs)
    return make


@pytest.fixture
def kafka_topic(kafka_topic_factory) -> str:
    return kafka_topic_factory()


@pytest.fixture
def kafka_group_id(request) -> str:
    return f"{_test_name(request)}-{os.urandom(3).hex()}"


@pytest.fixture
def kafka_broker_factory(request, tmp_path, kafka_broker_settings):
    """start(*flags, mode=None, env=None, data_dir=None, **settings) -> a started broker of this
    test's own (subprocess flags in `flags` and `env` apply to the subprocess mode); all are
    stopped after the test."""
    started = []

    def start(*flags: str, mode: str | None = None, env: dict | None = None, data_dir: str | None = None,
              **settings):
        mode = mode or ("subprocess" if flags or env else _mode(request.config))
        path = data_dir or str(tmp_path / f"data{len(started)}")
        merged = {**kafka_broker_settings, **settings}
        if mode == "subprocess":
            broker = BrokerProcess(path, *flags, env=env, **merged).start()
        else:
            broker = InProcessBroker(path, **merged)
        started.append(broker)
        return broker

    yield start
    errors = []
    for broker in started:
        try:
            stop_broker(broker)
        except BaseException as exc:   # stop the others, then fail
            errors.append(exc)
    if errors:
        raise errors[0]
