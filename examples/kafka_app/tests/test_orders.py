"""The application's tests, on a real broker from pstream.testing (no Docker, no mocks)."""

from confluent_kafka import Consumer, Producer

import orders


def test_totals_are_per_customer(kafka_bootstrap, kafka_topic_factory, kafka_group_id):
    orders_topic, totals_topic = kafka_topic_factory(partitions=3), kafka_topic_factory()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for customer, amount in [("ada", 5), ("bob", 7), ("ada", 10)]:
        orders.place_order(producer, orders_topic, customer, amount)
    assert producer.flush(10) == 0

    sums = orders.total_orders(kafka_bootstrap, orders_topic, totals_topic, kafka_group_id, expected=3)

    assert sums == {"ada": 15, "bob": 7}
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": kafka_group_id + "-check",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([totals_topic])
    got = {}
    while len(got) < 2:
        msg = reader.poll(5)
        assert msg is not None, "the totals never arrived"
        got[msg.key().decode()] = int(msg.value())
    reader.close()
    assert got == {"ada": 15, "bob": 7}


def test_each_test_gets_its_own_topic(kafka_topic, kafka_broker):
    assert kafka_topic.startswith("test_each_test_gets_its_own_topic")
    assert kafka_broker.create_topic() != kafka_topic


def test_a_compacted_topic_from_the_factory(kafka_topic_factory, kafka_bootstrap):
    topic = kafka_topic_factory(partitions=1, cleanup_policy="compact")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, b"v", key=b"k")
    assert producer.flush(10) == 0
