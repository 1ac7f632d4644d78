"""Serving an application's open Log over the Kafka protocol, from the application's process.

    with pstream.Log("/var/lib/app/events") as log:
        handle = pstream.serve_in_thread(log, listen="127.0.0.1:9092")
        log.topic("orders").append(b"...", key=b"o-1")   # Kafka consumers elsewhere see it
        ...
        handle.close()

    async def main(log):
        await pstream.serve(log, listen="127.0.0.1:9092")  # until cancelled

The broker is the one `pstream serve` runs (pstream/broker/broker.py), given the open Log
instead of a directory: it shares the Log's shard threads and partitions, so a record
appended in-process is readable by Kafka clients at once and one produced by a Kafka client
is readable in-process at once. While it serves, the broker's group and transaction
coordinators own `__consumer_offsets` and `__transaction_state`: the Log's consumers commit
through the coordinator (pstream/consumer.py) and `log.transaction()` is refused. Stopping the
broker leaves the Log open. Settings are `pstream serve`'s (pstream/broker/config.py) by name,
except those of the Log itself (data_dir, shards, topic defaults: the Log's own apply); the
admin HTTP API is off unless `admin_listen` is given.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from pstream.broker.broker import Broker
from pstream.broker.config import BrokerConfig, load_config
from pstream.errors import ConfigError

_log = logging.getLogger("pstream.broker")

# Settings of the Log, not of the broker: the open Log already has them.
LOG_SETTINGS = ("data_dir", "shards", "flush", "flush_ms", "flush_bytes", "segment_bytes", "segment_ms",
                "retention_ms", "retention_bytes", "retention_check_ms", "write_pool_bytes", "max_open_files",
                "index_cache_bytes", "cleanup_policy", "min_cleanable_dirty_ratio", "min_compaction_lag_ms",
                "max_compaction_lag_ms", "delete_retention_ms", "cleaner_enable", "cleaner_threads",
                "cleaner_dedupe_buffer_bytes", "cleaner_backoff_ms")


def served_config(log, listen: str, admin_listen: str | None, settings: dict[str, Any]) -> BrokerConfig:
    """The broker settings for serving `log` (environment variables are not read: the
    application says what it wants)."""
    for name in settings:
        if name in LOG_SETTINGS:
            raise ConfigError(f"setting {name} belongs to the Log (pstream.Log(..., {name}=...)), not to serve()")
    return load_config({**settings, "listen": listen, "admin_listen": admin_listen or "off",
                        "data_dir": log.path}, env={})


async def serve(log, listen: str = "127.0.0.1:9092", *, admin_listen: str | None = None, **settings) -> None:
    """Serves `log` over the Kafka protocol on this event loop until cancelled; then stops the
    broker (in-flight requests answered) and leaves the Log open."""
    broker = Broker(served_config(log, listen, admin_listen, settings), log=log)
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.stop()


class ServeHandle:
    """A broker serving a Log from its own thread and event loop (serve_in_thread)."""

    def __init__(self, log, config: BrokerConfig) -> None:
        self.log = log
        self._config = config
        self._broker: Broker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pstream-serve", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the Kafka listener is bound to."""
        return self._broker.bound_address

    @property
    def bootstrap(self) -> str:
        """host:port for a Kafka client's bootstrap.servers."""
        return f"{self._broker.host}:{self._broker.port}"

    @property
    def broker(self) -> Broker:
        return self._broker

    def _start(self, timeout: float) -> ServeHandle:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the broker did not start within {timeout} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        try:
            runner(self._main())
        except BaseException as exc:   # reported to the starting thread, or logged
            if not self._started.is_set():
                self._error = exc
                self._started.set()
            else:
                _log.exception("the broker serving %s stopped with an error", self.log.path)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._broker = Broker(self._config, log=self.log)
        await self._broker.start()
        self._started.set()
        await self._stop.wait()
        await self._broker.stop()

    def close(self, timeout: float = 30.0) -> None:
        """Stops the broker (in-flight requests answered, connections closed) and its thread;
        the Log stays open. Idempotent."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "serving" if self._thread.is_alive() else "stopped"
        return f"ServeHandle({self.log.path!r}, {state})"


def serve_in_thread(log, listen: str = "127.0.0.1:9092", *, admin_listen: str | None = None,
                    start_timeout: float = 30.0, **settings) -> ServeHandle:
    """Serves `log` over the Kafka protocol from a new thread (its own event loop); returns
    once the listener is bound. `handle.close()` stops it; closing the Log stops it first."""
    handle = ServeHandle(log, served_config(log, listen, admin_listen, settings))
    handle._start(start_timeout)
    log.on_close(handle.close)
    return handle
