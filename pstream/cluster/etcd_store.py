"""The cluster's metadata in etcd (v3 API, through aetcd: asyncio over etcd's own gRPC API, with
leases, transactions and watches, which is all a broker needs; the JSON gateway would need
a streaming HTTP client for watches).

One EtcdMetadata per broker:
- registers the broker under a lease it keeps alive (a broker that stops renewing, because it
  died, hung or lost etcd, vanishes from brokers/ after the lease's TTL);
- campaigns for the controller key under the same lease (the first to create it wins; when it
  vanishes, every broker campaigns again);
- loads the whole layout once and then applies etcd's watch events in revision order to its
  ClusterView, calling `on_change(kind, what)` after each;
- writes topics and partition records with transactions: a topic is created only if absent, a
  partition record replaced only if unchanged since it was read (compare-and-swap).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
from dataclasses import replace
from urllib.parse import urlsplit

import aetcd

from pstream.cluster.state import BrokerRecord, ClusterView, PartitionRecord, TopicRecord
from pstream.errors import ClusterUnavailableError

LOCK_POLL_S = 0.02
TXN_OPS = 100   # operations per etcd transaction, below etcd's default --max-txn-ops (128)
_log = logging.getLogger("pstream.cluster")

RETRY_S = 0.5


DEFAULT_ROOT = "/pstream"


def parse_cluster_url(spec: str) -> tuple[list[tuple[str, int]], str]:
    """`etcd://HOST:PORT[,HOST:PORT...][/NAME]` (the scheme optional) -> ([(host, port)], key root):
    several clusters can share one etcd under different names."""
    rest = spec[len("etcd://"):] if spec.startswith("etcd://") else spec
    rest, slash, name = rest.partition("/")
    return parse_endpoints(rest), "/" + name if slash and name else DEFAULT_ROOT


def parse_endpoints(spec: str) -> list[tuple[str, int]]:
    """`HOST:PORT[,HOST:PORT...]` -> [(host, port)]."""
    out = []
    for item in spec.split(","):
        if not item.strip():
            continue
        parts = urlsplit("//" + item.strip())
        if not parts.hostname or parts.port is None:
            raise ValueError(f"cluster endpoint {item!r} must be HOST:PORT (in {spec!r})")
        out.append((parts.hostname, parts.port))
    if not out:
        raise ValueError(f"no etcd endpoint in {spec!r}")
    return out


# Every endpoint given is a subchannel; requests go round-robin over those that answer, so the
# cluster goes on while any member of etcd's quorum is reachable (as etcd's own clientv3 does).
GRPC_OPTIONS = {"grpc.lb_policy_name": "round_robin"}


def grpc_target(endpoints: list[tuple[str, int]]) -> tuple[str, int]:
    """(host, port) for aetcd, which connects to "host:port": with several endpoints, a gRPC
    target listing their addresses ("ipv4:A:P,B:P"; names resolved here, to IPv4 where every
    endpoint has it, else IPv6); one endpoint as it is."""
    if len(endpoints) == 1:
        return endpoints[0]
    resolved = []
    for host, port in endpoints:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ClusterUnavailableError(f"cannot resolve the etcd endpoint {host}:{port}: {exc}") from None
        resolved.append(({family: sockaddr[0] for family, *_, sockaddr in reversed(infos)}, port))
    for family, scheme, bracket in ((socket.AF_INET, "ipv4:", "{}"), (socket.AF_INET6, "ipv6:", "[{}]")):
        if all(family in ips for ips, _ in resolved):
            hosts = [bracket.format(ips[family]) for ips, _ in resolved]
            ports = [port for _, port in resolved]
            # aetcd appends ":port" to the host: the last address's port goes there
            return scheme + ",".join([*(f"{h}:{p}" for h, p in zip(hosts[:-1], ports)), hosts[-1]]), ports[-1]
    raise ClusterUnavailableError(f"etcd endpoints {format_endpoints(endpoints)} share no address family")


def format_endpoints(endpoints: list[tuple[str, int]]) -> str:
    return ",".join(f"{host}:{port}" for host, port in endpoints)


def _unavailable_on_error(method):
    """An etcd failure in a request's write becomes ClusterUnavailableError, which handlers
    answer with REQUEST_TIMED_OUT and the reason."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except aetcd.exceptions.ClientError as exc:
            raise ClusterUnavailableError(f"etcd at {format_endpoints(self.endpoints)}: "
                                          f"{type(exc).__name__}: {exc}") from None
    return wrapper


class EtcdMetadata:
    def __init__(self, endpoints: list[tuple[str, int]], root: str, node_id: int, lease_seconds: int, on_change):
        self.endpoints = endpoints
        self.node_id = node_id
        self.lease_seconds = lease_seconds
        self.view = ClusterView(root)
        self.on_change = on_change
        self.client: aetcd.Client | None = None
        self.lease = None
        self._record: BrokerRecord | None = None
        self._tasks: list[asyncio.Task] = []
        self._keep_alive_task: asyncio.Task | None = None
        self._stopping = False
        self.loaded = asyncio.Event()

    # --- life -------------------------------------------------------------------------------

    async def start(self, record: BrokerRecord, cluster_id: str) -> str:
        """Connects, agrees on the cluster id (the first broker's), registers, loads and watches.
        Returns the cluster id in force."""
        self._record = record
        host, port = grpc_target(self.endpoints)
        options = GRPC_OPTIONS if len(self.endpoints) > 1 else None   # one endpoint: gRPC's default, as before
        self.client = aetcd.Client(host=host, port=port, timeout=10, options=options)
        tx = self.client.transactions
        key = self.view.key("cluster_id")
        try:
            await self.client.connect()
            await self.client.transaction(compare=[tx.version(key) == 0], success=[tx.put(key, cluster_id.encode())],
                                          failure=[])
        except aetcd.exceptions.ClientError as exc:
            await self.client.close()
            raise ClusterUnavailableError(f"cannot reach etcd at {format_endpoints(self.endpoints)}: {exc}") from None
        await self._register()
        await self._load()
        self._keep_alive_task = asyncio.create_task(self._keep_alive(), name="etcd-lease")
        self._tasks = [self._keep_alive_task,
                       asyncio.create_task(self._watch(), name="etcd-watch")]
        await self.campaign()
        return self.view.cluster_id

    async def leave(self) -> None:
        """Revoking the lease removes the broker (and its controller key) at once, so the
        controller moves its leaderships without waiting for the TTL; the watch goes on."""
        self._stopping = True
        if self._keep_alive_task is not None:
            self._keep_alive_task.cancel()
            await asyncio.gather(self._keep_alive_task, return_exceptions=True)
        if self.client is not None and self.lease is not None:
            lease, self.lease = self.lease, None
            try:
                await asyncio.wait_for(lease.revoke(), 5)
            except Exception as exc:   # etcd gone: the lease expires by itself
                _log.warning("could not revoke the broker's etcd lease: %s", exc)

    async def stop(self) -> None:
        await self.leave()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.close()

    async def _register(self) -> None:
        self.lease = await self.client.lease(self.lease_seconds)
        await self.client.put(self.view.broker_key(self.node_id), self._record.encode(), lease=self.lease)

    async def _keep_alive(self) -> None:
        """Renews the lease every third of its TTL; a lease found expired (etcd unreachable for
        longer than the TTL) is replaced and the broker registered again."""
        while True:
            await asyncio.sleep(max(self.lease_seconds / 3, 0.2))
            try:
                answer = await self.lease.refresh()
                if answer is None or answer.TTL <= 0:
                    _log.warning("broker %d: its etcd lease expired; registering again", self.node_id)
                    await self._register()
                    await self.campaign()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("broker %d: cannot renew its etcd lease: %s", self.node_id, exc)

    async def _load(self) -> None:
        got = await self.client.get_prefix(self.view.root.encode() + b"/")
        fresh = ClusterView(self.view.root)
        for kv in got:
            fresh.apply(kv.key, kv.value, kv.mod_revision)
        fresh.revision = got.header.revision
        self.view.__dict__.update(fresh.__dict__)
        self.loaded.set()
        self.on_change("loaded", None)

    async def _watch(self) -> None:
        while True:
            try:
                watch = await self.client.watch_prefix(self.view.root.encode() + b"/",
                                                       start_revision=self.view.revision + 1)
                async for event in watch:
                    deleted = event.kind == aetcd.rtypes.EventKind.DELETE
                    changed = self.view.apply(event.kv.key, None if deleted else event.kv.value,
                                              event.kv.mod_revision)
                    if changed is not None:
                        self.on_change(*changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                _log.warning("broker %d: etcd watch ended (%s); reloading", self.node_id, exc)
                await asyncio.sleep(RETRY_S)
                try:
                    await self._load()
                except Exception as again:
                    _log.warning("broker %d: cannot reload the cluster metadata: %s", self.node_id, again)

    # --- controller election ----------------------------------------------------------------

    async def campaign(self) -> bool:
        """Tries to become the controller (creates the key if absent, under this broker's lease)."""
        tx = self.client.transactions
        key = self.view.key("controller")
        won, _ = await self.client.transaction(
            compare=[tx.version(key) == 0],
            success=[tx.put(key, json.dumps({"node_id": self.node_id}).encode(), lease=self.lease)], failure=[])
        return won

    # --- writes -----------------------------------------------------------------------------

    @_unavailable_on_error
    async def create_topic(self, topic: TopicRecord, partitions: list[PartitionRecord]) -> bool:
        """Creates the partition records, then the topic's, which makes brokers take it; False if
        the topic exists. etcd takes so many operations per transaction (--max-txn-ops, 128 by
        default): the records go in chunks, each only while the topic does not exist yet."""
        tx = self.client.transactions
        key = self.view.topic_key(topic.name)
        records = [(self.view.partition_key(topic.name, i), rec.encode()) for i, rec in enumerate(partitions)]
        for start in range(0, len(records), TXN_OPS):
            won, _ = await self.client.transaction(compare=[tx.version(key) == 0], failure=[], success=[
                tx.put(k, v) for k, v in records[start:start + TXN_OPS]])
            if not won:
                return False
        won, _ = await self.client.transaction(compare=[tx.version(key) == 0], success=[tx.put(key, topic.encode())],
                                               failure=[])
        return won

    @_unavailable_on_error
    async def add_partitions(self, topic: TopicRecord, partitions: list[PartitionRecord]) -> bool:
        """Adds partitions after the topic's last (CreatePartitions): their records, then the
        topic's record with the new count, each write only while the topic's record is still
        `topic` (compare-and-swap on its revision); False if it changed meanwhile. A partition
        record beyond the topic's count is ignored until the count covers it, so records a
        failed attempt left are harmless, and the next attempt writes them again."""
        tx = self.client.transactions
        key = self.view.topic_key(topic.name)
        unchanged = tx.mod(key) == topic.revision
        records = [(self.view.partition_key(topic.name, topic.partitions + i), rec.encode())
                   for i, rec in enumerate(partitions)]
        for start in range(0, len(records), TXN_OPS):
            won, _ = await self.client.transaction(compare=[unchanged], failure=[], success=[
                tx.put(k, v) for k, v in records[start:start + TXN_OPS]])
            if not won:
                return False
        grown = replace(topic, partitions=topic.partitions + len(partitions))
        won, _ = await self.client.transaction(compare=[unchanged], success=[tx.put(key, grown.encode())],
                                               failure=[])
        return won

    @_unavailable_on_error
    async def reserve_producer_ids(self, count: int) -> int:
        """Takes the next `count` producer ids from the cluster's counter (KRaft's AllocateProducerIds):
        returns the first; no other broker is ever given one of them."""
        tx = self.client.transactions
        key = self.view.key("producer_ids")
        while True:
            got = await self.client.get(key)
            first = int(got.value) if got is not None else 1
            compare = tx.mod(key) == got.mod_revision if got is not None else tx.version(key) == 0
            won, _ = await self.client.transaction(compare=[compare], success=[tx.put(key, b"%d" % (first + count))],
                                                   failure=[])
            if won:
                return first

    @_unavailable_on_error
    async def delete_topic(self, name: str) -> None:
        await self.client.delete(self.view.topic_key(name))
        await self.client.delete_prefix(self.view.key("partitions", name) + b"/")

    @_unavailable_on_error
    async def read_topic(self, name: str) -> TopicRecord | None:
        """The topic's record as etcd holds it now (the view may lag behind)."""
        got = await self.client.get(self.view.topic_key(name))
        return TopicRecord.decode(name, got.value, got.mod_revision) if got is not None else None

    @_unavailable_on_error
    async def replace_topic(self, old: TopicRecord, new: TopicRecord) -> bool:
        """Compare-and-swap of a topic's record (its configs), as replace_partition."""
        tx = self.client.transactions
        key = self.view.topic_key(old.name)
        won, _ = await self.client.transaction(compare=[tx.mod(key) == old.revision],
                                               success=[tx.put(key, new.encode())], failure=[])
        return won

    # --- documents changed under a lock (shared_state.py) -------------------------------------

    @_unavailable_on_error
    async def acquire_lock(self, name: str, timeout_s: float) -> int:
        """Takes the lock `name` under this broker's lease (freed if the broker dies); returns
        its revision, which fences the writes made under it."""
        tx = self.client.transactions
        key = self.view.key("locks", name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self.lease is None:   # leaving: a lock without a lease would outlive this broker
                raise ClusterUnavailableError(f"broker {self.node_id} is leaving the cluster")
            won, answers = await self.client.transaction(
                compare=[tx.version(key) == 0],
                success=[tx.put(key, json.dumps({"node_id": self.node_id}).encode(), lease=self.lease)], failure=[])
            if won:
                return answers[0].response_put.header.revision
            if loop.time() > deadline:
                holder = await self.client.get(key)
                raise ClusterUnavailableError(f"the cluster's {name} lock is held "
                                              f"({holder.value.decode() if holder else '?'}) for more than "
                                              f"{timeout_s:.0f} s")
            await asyncio.sleep(LOCK_POLL_S)

    async def release_lock(self, name: str, revision: int) -> None:
        tx = self.client.transactions
        key = self.view.key("locks", name)
        await self.client.transaction(compare=[tx.mod(key) == revision], success=[tx.delete(key)], failure=[])

    @_unavailable_on_error
    async def read_shared(self) -> dict[str, tuple[bytes, int]]:
        """{document: (value, revision)} as etcd holds them now."""
        prefix = self.view.key("shared") + b"/"
        return {kv.key[len(prefix):].decode(): (kv.value, kv.mod_revision)
                for kv in await self.client.get_prefix(prefix)}

    @_unavailable_on_error
    async def write_shared(self, document: str, value: bytes, lock: tuple[str, int] | None) -> int | None:
        """Writes a document while holding `lock` (name, revision); lock None: only if absent.
        Returns its new revision, or None if the lock was lost (or the document exists)."""
        tx = self.client.transactions
        key = self.view.key("shared", document)
        compare = [tx.version(key) == 0] if lock is None else [tx.mod(self.view.key("locks", lock[0])) == lock[1]]
        won, answers = await self.client.transaction(compare=compare, success=[tx.put(key, value)], failure=[])
        return answers[0].response_put.header.revision if won else None

    @_unavailable_on_error
    async def replace_partitions(self, changes: list[tuple[str, int, PartitionRecord, PartitionRecord]]) -> bool:
        """replace_partition of several records [(topic, index, old, new)] in one transaction
        (at most TXN_OPS): all written, or none if any changed meanwhile."""
        tx = self.client.transactions
        keys = [self.view.partition_key(name, index) for name, index, _, _ in changes]
        won, _ = await self.client.transaction(
            compare=[tx.mod(key) == old.revision for key, (_, _, old, _) in zip(keys, changes)],
            success=[tx.put(key, new.encode()) for key, (_, _, _, new) in zip(keys, changes)], failure=[])
        return won

    @_unavailable_on_error
    async def replace_partition(self, name: str, index: int, old: PartitionRecord, new: PartitionRecord) -> bool:
        """Compare-and-swap: writes `new` only if the record is still `old` (same revision)."""
        tx = self.client.transactions
        key = self.view.partition_key(name, index)
        won, _ = await self.client.transaction(compare=[tx.mod(key) == old.revision],
                                               success=[tx.put(key, new.encode())], failure=[])
        return won
