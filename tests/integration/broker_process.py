"""The real broker (`python -m pstream serve`) as a test fixture, from pstream.testing (the
plugin pstream ships for any project's Kafka tests): `broker` and `broker_factory` start one of
the test's own (on 127.0.0.1, a temporary data directory, free Kafka and admin ports), for tests
that restart, kill or reconfigure it; `shared_broker` is the session's one (pstream.testing's
kafka_broker, a subprocess here: pyproject's pstream_broker), for tests that need only topics of
their own, which are deleted after each test.

The fixtures are defined here once; the conftest.py of each folder that uses them (integration,
admin) puts this folder on sys.path and imports them, so pytest finds them there.
"""

from __future__ import annotations

import os
import shutil

import pytest

from pstream.testing import BrokerProcess, assert_no_lost_exceptions, free_port, stop_broker  # noqa: F401


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
    for b in started:   # a clean shutdown must succeed; a broker that crashed during the test fails it here
        stop_broker(b)


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    return broker_factory()


@pytest.fixture
def shared_broker(kafka_broker):
    """The session's broker; the topics a test made there are deleted after it."""
    from pstream.client import KafkaClient
    yield kafka_broker
    with KafkaClient(kafka_broker.bootstrap, client_id="test-cleanup") as client:
        for name in client.metadata().topics:
            if not name.startswith("__"):
                client.delete_topic(name)


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
