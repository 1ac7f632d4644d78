"""A service that embeds the log and serves it to Kafka clients from its own process.

The service appends sensor readings in-process (no client, no network hop) while the same
Log is served over the Kafka protocol: a Kafka consumer (confluent-kafka here; any client
would do) reads what it appended, and what a Kafka producer sends the service follows
in-process at once.

    python examples/serve_embedded.py [LISTEN]      # default 127.0.0.1:0 (a free port)
"""

from __future__ import annotations

import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer

import pstream


def main(listen: str = "127.0.0.1:0") -> tuple[int, list[bytes]]:
    with pstream.Log(tempfile.mkdtemp(prefix="sensors-")) as log, \
            pstream.serve_in_thread(log, listen=listen, group_initial_rebalance_delay_ms=0) as server:
        readings = log.topic("readings", partitions=2)
        commands = log.topic("commands")
        for i in range(100):                        # the service writes in-process
            readings.append(b"%d" % (20 + i % 5), key=b"sensor-%d" % (i % 4))

        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "dashboard",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["readings"])
        seen, deadline = 0, time.monotonic() + 30
        while seen < 100 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            seen += msg is not None and not msg.error()
        consumer.close()

        producer = Producer({"bootstrap.servers": server.bootstrap})
        producer.produce("commands", b"recalibrate")
        producer.flush(10)
        received = [rec.value for rec in commands.follow(start="earliest", timeout=0.5)]   # the service reacts
        print(f"a Kafka consumer read {seen} readings; the service received {received}")
        return seen, received


if __name__ == "__main__":
    main(*sys.argv[1:2])
