"""The end-to-end load tool (`pstream bench`, bench/compare.py): workloads through librdkafka,
brokers started fresh or reached at an address, CPU and memory from /proc."""
