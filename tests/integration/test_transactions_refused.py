"""Transactions are not served yet: a transactional producer of each client library fails at
once with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (fatal to all of them) and a message saying so,
instead of retrying FindCoordinator until its own timeout."""

from __future__ import annotations

import asyncio

import aiokafka
import kafka
import pytest
from confluent_kafka import KafkaException, Producer

TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
CLIENT_TIMEOUT_S = 60   # a retry loop would end in a timeout error, not in error 53


def test_librdkafka_transactional_producer_fails_at_once(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-librdkafka"})
    with pytest.raises(KafkaException) as failure:
        producer.init_transactions(CLIENT_TIMEOUT_S)
    error = failure.value.args[0]
    assert (error.code(), error.fatal()) == (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, True)
    assert "does not serve transactions" in error.str()


def test_kafka_python_transactional_producer_fails_at_once(broker):
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kafka-python",
                                   max_block_ms=CLIENT_TIMEOUT_S * 1000)
    try:
        with pytest.raises(kafka.errors.TransactionalIdAuthorizationFailedError):
            producer.init_transactions()
    finally:
        producer.close(timeout=5)


def test_aiokafka_transactional_producer_fails_at_once(broker):
    async def start():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-aiokafka")
        try:
            await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
        finally:
            await producer.stop()

    with pytest.raises(aiokafka.errors.TransactionalIdAuthorizationFailed):
        asyncio.run(start())
