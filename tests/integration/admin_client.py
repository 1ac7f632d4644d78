"""What the admin tests share: each client's admin API on the test broker (confluent-kafka,
kafka-python, aiokafka), a topic's configs as confluent-kafka describes them, Kafka's
ConfigSource numbers, and polling until the broker's background work (retention, the
cleaner) shows.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka.admin import KafkaAdminClient

DYNAMIC, STATIC_BROKER, DEFAULT = 1, 4, 5          # Kafka's ConfigSource numbers


def wait_until(condition, timeout: float = 10.0, interval: float = 0.05, what: str = "the condition"):
    """Polls condition() until it returns something truthy; returns that, or fails at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not hold within {timeout}s (last: {value!r})")
        time.sleep(interval)


def confluent_admin(broker) -> AdminClient:
    # log_level 0: no librdkafka chatter on stderr when a later test's broker is gone
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000, "log_level": 0})


def kp_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)


def run_aio(broker, body):
    """Runs body(admin) with a started AIOKafkaAdminClient and returns its result."""
    async def main():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            return await body(admin)
        finally:
            await admin.close()
    return asyncio.run(main())


def topic_configs(admin: AdminClient, topic: str) -> dict:
    """{name: (value, source)} of a topic's configs, as confluent-kafka's AdminClient reports them."""
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    return {name: (entry.value, entry.source) for name, entry in configs.items()}
