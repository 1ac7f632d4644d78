"""The broker's admin HTTP API and Prometheus metrics (127.0.0.1:9644 by default, as Redpanda).

- `http`: a small HTTP/1.1 server on asyncio streams (GET/HEAD, keep-alive, bounded heads,
  JSON errors), knowing nothing of the broker;
- `api`: the endpoints, JSON views of the broker's state read on its event loop;
- `metrics`: the broker's own Prometheus registry: counters the connection and the produce
  and fetch handlers update, and a collector reading partitions, shards and groups at scrape;
- `memory`: /v1/debug/memory (RSS, write buffers per shard, tracemalloc on demand).

The broker starts it (`Broker.start`, setting admin_listen); nothing here writes to the log.
"""
