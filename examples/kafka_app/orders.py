"""A small Kafka application: reads orders, totals them per customer, writes the totals.

Plain confluent-kafka, nothing pstream-specific: its tests (tests/) run it against a real
broker from `pstream.testing`, as they would against Kafka.
"""

from __future__ import annotations

import json

from confluent_kafka import Consumer, Producer


def place_order(producer: Producer, topic: str, customer: str, amount: int) -> None:
    producer.produce(topic, json.dumps({"customer": customer, "amount": amount}).encode(), key=customer.encode())


def total_orders(bootstrap: str, orders: str, totals: str, group: str, expected: int, timeout: float = 30.0) -> dict:
    """Consumes `expected` orders, then produces each customer's total to `totals` (keyed by
    customer) and commits; returns the totals."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    consumer.subscribe([orders])
    sums: dict[str, int] = {}
    seen = 0
    try:
        import time
        deadline = time.monotonic() + timeout
        while seen < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            order = json.loads(msg.value())
            sums[order["customer"]] = sums.get(order["customer"], 0) + order["amount"]
            seen += 1
        for customer, total in sums.items():
            producer.produce(totals, str(total).encode(), key=customer.encode())
        producer.flush(10)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return sums
