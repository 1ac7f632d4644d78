"""A core other than 0 (`pstream serve --cores N`): a child process of core 0 serving the
partitions it owns as a broker of its own (node id node_id + k, each listener's port + k).

It is told its settings on stdin, dies with core 0 (PR_SET_PDEATHSIG, and the end of the
control connection), opens the Log as core k (only its partitions), listens, then connects
to core 0's control socket and carries out what core 0 sends (home.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import pickle
import signal
import sys

from pstream.admin.api import partition_stats
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.broker")
PR_SET_PDEATHSIG = 1


class MemberTransactions:
    """What core 0's transaction coordinator told this core: each producer's epoch and the
    partitions of its ongoing transaction, to check transactional batches as it would
    (TransactionCoordinator.produce_error)."""

    active = False   # coordinates nothing (what the metrics ask a coordinator)

    def __init__(self):
        self.ready = False   # told everything core 0 knows (until then: retry elsewhere)
        self._by_producer: dict[int, tuple[int, frozenset]] = {}
        self._producer_of: dict[str, int] = {}   # transactional id -> its current producer id

    def apply(self, message: dict) -> None:
        producer_id, txn_id = message["producer_id"], message["transactional_id"]
        old = self._producer_of.get(txn_id)
        if old is not None and old != producer_id:
            self._by_producer.pop(old, None)
        self._producer_of[txn_id] = producer_id
        partitions = frozenset(map(tuple, message["partitions"])) if message["ongoing"] else frozenset()
        self._by_producer[producer_id] = (message["epoch"], partitions)

    def produce_error(self, producer_id: int, producer_epoch: int, topic: str, partition: int) -> ErrorCode:
        if not self.ready:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        known = self._by_producer.get(producer_id)
        if known is None:
            return ErrorCode.INVALID_TXN_STATE
        if producer_epoch < known[0]:
            return ErrorCode.INVALID_PRODUCER_EPOCH
        if (topic, partition) not in known[1]:
            return ErrorCode.INVALID_TXN_STATE
        return ErrorCode.NONE

    def stop(self) -> None:
        pass   # nothing runs here: core 0's coordinator does

    def list(self, *_filters) -> list:
        return []   # ListTransactions: core 0 coordinates every transaction


class MemberLink:
    """This core's control connection to core 0."""

    def __init__(self, broker, path: str):
        self.broker = broker
        self.path = path
        self._task: asyncio.Task | None = None

    async def connect(self) -> None:
        from pstream.broker.cores.home import CONTROL_LINE_LIMIT

        reader, writer = await asyncio.open_unix_connection(self.path, limit=CONTROL_LINE_LIMIT)
        listeners = {lis.name: lis.advertised for lis in self.broker.listeners}
        writer.write(json.dumps({"core": self.broker.core_map.core, "listeners": listeners}).encode() + b"\n")
        self._task = asyncio.ensure_future(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker = self.broker
        try:
            while line := await reader.readline():
                message = json.loads(line)
                error = result = None
                try:
                    result = await self._carry_out(message)
                except Exception as exc:
                    _log.exception("core %d: %s from core 0 failed", broker.core_map.core, message["op"])
                    error = str(exc) or type(exc).__name__
                if "id" in message:
                    writer.write(json.dumps({"id": message["id"], "error": error, "result": result}).encode() + b"\n")
        except (ConnectionError, ValueError) as exc:
            _log.error("core %d: control connection failed: %s", broker.core_map.core, exc)
        finally:
            writer.close()
        if broker.state == "serving":
            _log.error("core %d: core 0 went away; stopping", broker.core_map.core)
            await broker.stop()

    async def _carry_out(self, message: dict):
        broker = self.broker
        op = message["op"]
        if op == "metrics":   # core 0's /metrics shows every core's
            return broker.metrics.exposition().decode()
        if op == "partition_stats":   # and its admin API every core's partitions
            return partition_stats(broker.log, message["topic"])
        if op == "topology":
            broker.core_map.addresses = {int(core): {name: tuple(address) for name, address in by_name.items()}
                                         for core, by_name in message["cores"].items()}
        elif op == "txn":
            broker.transactions.apply(message)
        elif op == "ready":
            broker.transactions.ready = True
        elif op == "refresh":
            await broker.refresh_shared_state()
        elif op == "markers":
            await broker.write_local_markers(message["producer_id"], message["epoch"], message["commit"],
                                             [tuple(tp) for tp in message["partitions"]])
        else:
            raise ValueError(f"unknown operation {op!r}")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):   # not Linux: the control connection's end stops it too
        pass
    if os.getppid() != parent_pid:   # core 0 died before the line above
        sys.exit(1)


def main() -> None:
    """The child process's entry point (home.py starts it)."""
    config, core, parent_pid, control_path, relay_path = pickle.load(sys.stdin.buffer)
    _die_with_parent(parent_pid)
    from pstream.broker.broker import Broker, raise_fd_limit

    logging.basicConfig(level=config.log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[core {core}]: %(message)s")
    raise_fd_limit()

    async def serve() -> int:
        broker = Broker(config, core=core, relay_path=relay_path)
        await broker.start()
        link = MemberLink(broker, control_path)
        try:
            await link.connect()
        except OSError as exc:
            _log.error("core %d: cannot reach core 0 (%s); stopping", core, exc)
            await broker.stop()
            return 1
        await broker.serve_until_signalled()
        link.close()
        return broker.exit_code

    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(serve()))
    sys.exit(uvloop.run(serve()))
