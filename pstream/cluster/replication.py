"""Kafka's replica protocol between brokers: followers fetch from leaders, leaders track what
each follower holds and advance the high watermark to what the in-sync replicas hold.

Leading a partition (LeaderState):
- the leader epoch from the cluster's record is stamped into every batch it appends;
- a follower's Fetch (v15: its id in ReplicaState, topics by id; a v12 one's replica id set, topics
  by name, is served too) says how far it holds the log: its fetch offset. Followers
  fetch only after their previous copy is durable under their flush policy, so the fetch offset
  is what the follower would keep through kill -9;
- the high watermark is the least of those offsets over the ISR, with the leader's own durable
  end; it never moves back. acks=all produce answers once it passes the batch (wait_replicated);
- a follower that has not caught up (fetched up to the leader's end as of its previous fetch)
  for replica_lag_time_max_ms leaves the ISR; one that reaches the high watermark joins it.
  Both are compare-and-swap writes of the partition's record in etcd: an ISR change the
  controller raced with is dropped and recomputed from the new record.
- followers read only what the leader holds durably, so a record a follower holds was on the
  leader's disk too.

Following (Fetcher, one per leader broker): a loop of Fetch requests (v12, replica_id = this
broker) for every partition it follows on that leader, from its own log end; batches are
appended exactly as the leader wrote them (Partition.submit_batch(replica=True)) and the
leader's high watermark is kept as the partition's replicated high watermark.

Before it fetches at a new leader epoch (and after a restart) a follower asks the leader where
its own latest epoch ended (OffsetForLeaderEpoch, answered from the leader's epoch cache,
epochs.py) and cuts its log there if it went further (KIP-101, KIP-279): records no ISR held,
which no client saw acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pstream import _core
from pstream.broker.handlers.fetch import cut_at
from pstream.cluster import election, rules
from pstream.cluster.epochs import UNDEFINED, LeaderEpochCache
from pstream.cluster.peers import PeerConnection
from pstream.errors import PStreamError, ReplicaOffsetError
from pstream.log import resolve_passed
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.fetch import FetchRequest, FetchResponse
from pstream.protocol.messages.offset_for_leader_epoch import OffsetForLeaderEpochRequest
from pstream.protocol.primitives import ZERO_UUID

_log = logging.getLogger("pstream.cluster")

FETCH_KEY = 1
EPOCH_KEY = 23                      # OffsetForLeaderEpoch
EPOCH_VERSION = 4
REPLICA_FETCH_VERSION = 15          # the follower in ReplicaState (KIP-903), topics by id (v13+)
REPLICA_FETCH_WAIT_MS = 500         # Kafka's replica.fetch.wait.max.ms
REPLICA_FETCH_MAX_BYTES = 1 << 20   # per partition (replica.fetch.max.bytes)
RETRY_S = 0.2
CALL_TIMEOUT_S = 30.0               # a peer silent this long (past a fetch's wait) is given up on
ISR_CHECK_S = 0.5

PartitionData = FetchResponse.PartitionData


class NotLeaderError(PStreamError):
    """This broker no longer leads the partition (acks=all waits end with it)."""

    kafka_error = ErrorCode.NOT_LEADER_OR_FOLLOWER


class ReplicationTimeoutError(PStreamError):
    """The in-sync replicas did not acknowledge within the produce request's timeout."""

    kafka_error = ErrorCode.REQUEST_TIMED_OUT


def own_end(part) -> int:
    """What this copy holds under its flush policy: its durable end with "always", else its log end."""
    return part.durable_offset if part.flush_policy == "always" else part.log_end_offset


class LeaderState:
    __slots__ = ("caught_up", "epoch", "expand_base", "expanding", "fetched_end", "follower_end", "follower_start",
                 "isr", "key", "part", "pending_isr", "replicas", "since", "start_waiters", "waiters")

    def __init__(self, key, part, record):
        self.key = key
        self.part = part
        self.epoch = record.leader_epoch
        self.replicas = record.replicas
        self.isr = set(record.isr)
        self.follower_end: dict[int, int] = {}
        self.fetched_end: dict[int, int] = {}     # the leader's end when it last answered that follower
        self.since = time.monotonic()
        self.caught_up: dict[int, float] = {}
        self.waiters: list[tuple[int, asyncio.Future]] = []
        self.follower_start: dict[int, int] = {}   # each follower's log start, as its fetches tell it
        self.start_waiters: list[tuple[int, asyncio.Future]] = []   # DeleteRecords: (offset, future)
        self.pending_isr = False
        # Kafka's maximal ISR: replicas an ISR change adds count in the high watermark from the
        # moment it is sent until the view shows a record past the one it compared against
        # (the change may have been applied though its answer was lost).
        self.expanding: set[int] = set()
        self.expand_base = 0


class ReplicaManager:
    def __init__(self, node):
        self.node = node
        self.node_id = node.node_id
        self.leading: dict[tuple[str, int], LeaderState] = {}
        self.following: dict[tuple[str, int], tuple[int, int]] = {}   # -> (leader, leader epoch)
        self.fetchers: dict[int, Fetcher] = {}
        self.to_reconcile: set[tuple[str, int]] = set()   # followed, not yet checked against the leader's log
        self._epochs: dict[str, LeaderEpochCache] = {}      # by partition directory
        self._isr_task: asyncio.Task | None = None
        self._drops: dict[tuple[str, int], asyncio.Task] = {}   # copies of partitions no longer replicated here
        # Since start (metrics): ISR changes of the partitions this broker leads, leaderships it took.
        self.counters = {"isr_shrinks": 0, "isr_expands": 0, "leaderships": 0}

    @property
    def broker(self):
        return self.node.broker

    def start(self) -> None:
        self._isr_task = asyncio.get_running_loop().create_task(self._watch_isr())

    async def stop(self) -> None:
        tasks = [f.task for f in self.fetchers.values()] + ([self._isr_task] if self._isr_task else []) + \
            list(self._drops.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in self.leading.values():
            self._fail_waiters(state)
        self.fetchers.clear()
        self.leading.clear()

    # --- roles ------------------------------------------------------------------------------

    def apply_view(self) -> None:
        """Leads, follows or lets go of each local partition as the cluster's records say."""
        log = self.broker.log
        seen = set()
        topics = self.node.view.topics
        dropped = []
        for key, record in list(self.node.view.partitions.items()):
            name, index = key
            if name not in log or name not in topics:
                continue
            topic = log.get_topic(name)
            if index >= topic.partitions or topic.topic_id != topics[name].topic_id:
                continue   # not created here yet, or a stray of the same name (node.py warns)
            part = topic.partition(index)
            if self.node_id not in record.replicas:
                if part.log_end_offset > 0:
                    dropped.append(key)
                continue
            seen.add(key)
            part.follows_leader = not election.may_lead(record, self.node_id, self.broker.directory_id)
            if not part.follows_leader:
                self.following.pop(key, None)
                self._lead(key, part, record)
            elif record.leader == self.node_id:   # back on another disk: the controller moves it out first
                self._let_go(key)
                self.following.pop(key, None)
            else:
                self._let_go(key)
                if self.following.get(key) != (record.leader, record.leader_epoch):
                    self.to_reconcile.add(key)
                self.following[key] = (record.leader, record.leader_epoch)
                if part.replicated_high_watermark < 0:
                    part.replicated_high_watermark = 0
        for key in list(self.leading):
            if key not in seen:
                self._let_go(key)
        for key in list(self.following):
            if key not in seen:
                del self.following[key]
                self.to_reconcile.discard(key)
        self._update_fetchers()
        for key in dropped:   # neither led nor followed any more
            self._drop_copy(key)

    def epochs(self, part) -> LeaderEpochCache:
        cache = self._epochs.get(part.path)
        if cache is None:
            cache = self._epochs[part.path] = LeaderEpochCache.load(part)
            # Written before the batches that start an epoch were durable: a crash can leave
            # entries past the log's end (Kafka truncates its cache to the log end at load too).
            cache.truncate_from(part.log_end_offset)
        return cache

    def epoch_end(self, name: str, index: int, epoch: int) -> tuple[int, int, ErrorCode]:
        """OffsetForLeaderEpoch as this leader answers it: (epoch, end offset, error)."""
        state = self.leading.get((name, index))
        if state is None:
            return UNDEFINED, UNDEFINED, ErrorCode.NOT_LEADER_OR_FOLLOWER
        found, end = self.epochs(state.part).end_offset_for(epoch, state.part.log_end_offset)
        return found, end, ErrorCode.NONE

    def _lead(self, key, part, record) -> None:
        state = self.leading.get(key)
        if state is None or state.epoch != record.leader_epoch:
            if state is not None:
                self._fail_waiters(state)
            state = self.leading[key] = LeaderState(key, part, record)
            part.leader_epoch = record.leader_epoch
            self.epochs(part).assign(record.leader_epoch, part.log_end_offset)
            # Its idempotent producers' state is read again from the log, which holds what the
            # previous leader wrote: their next batches are checked against it, as the old leader would.
            part.reset_producer_state()
            if part.replicated_high_watermark < 0:
                part.replicated_high_watermark = 0
            self.counters["leaderships"] += 1
            _log.info("broker %d leads %s-%d at epoch %d (isr %s)", self.node_id, *key, record.leader_epoch,
                      list(record.isr))
        isr = set(record.isr)
        if record.leader_epoch == state.epoch:   # whoever changed it: this leader, or the controller
            self.counters["isr_shrinks"] += bool(state.isr - isr)
            self.counters["isr_expands"] += bool(isr - state.isr)
        state.isr = isr
        state.replicas = record.replicas
        state.pending_isr = False
        if record.revision > state.expand_base:
            state.expanding = set()
        self._wake_start_waiters(state)
        self._advance(state)

    def _let_go(self, key) -> None:
        state = self.leading.pop(key, None)
        if state is not None:
            self._fail_waiters(state)

    def _fail_waiters(self, state: LeaderState) -> None:
        for _, fut in state.waiters + state.start_waiters:
            if not fut.done():
                fut.set_exception(NotLeaderError("leadership moved while waiting for the in-sync replicas",
                                                 topic=state.key[0], partition=state.key[1]))
        state.waiters.clear()
        state.start_waiters.clear()

    def _update_fetchers(self) -> None:
        leaders = {leader for leader, _ in self.following.values() if leader >= 0 and leader != self.node_id}
        for leader in list(self.fetchers):
            if leader not in leaders:
                self.fetchers.pop(leader).task.cancel()
        for leader in leaders:
            if leader not in self.fetchers:
                self.fetchers[leader] = Fetcher(self, leader)
            self.fetchers[leader].wake()

    async def truncate(self, key, leader_epoch: int, end_offset: int) -> None:
        """A follower's log meets its leader's: cut at the end of the latest epoch both have."""
        name, index = key
        topic = self.broker.log.get_topic(name)
        part = topic.partition(index)
        cache = self.epochs(part)
        target = rules.truncation_point(leader_epoch, end_offset, cache.latest_epoch,
                                        cache.end_offset_for(leader_epoch, part.log_end_offset)[1],
                                        part.replicated_high_watermark, part.log_start_offset)
        if target < part.log_end_offset:
            _log.warning("broker %d: %s-%d went further than its leader (to %d): cutting it at %d", self.node_id,
                         name, index, part.log_end_offset, target)
            hw = part.replicated_high_watermark
            part = await self.broker.log.run_blocking(topic.truncate_partition, index, target)
            part.follows_leader = True
            part.replicated_high_watermark = min(max(hw, 0), target)
            cache.truncate_from(target)
        self.to_reconcile.discard(key)

    async def restart_at(self, key, offset: int):
        """A follower whose leader's log starts past its end (back on an empty disk after
        retention moved on, or added again after its copy was dropped): its copy is emptied and
        starts at the leader's log start, from where it fetches."""
        name, index = key
        topic = self.broker.log.get_topic(name)
        old = topic.partition(index)
        _log.warning("broker %d: %s-%d (ending at %d) starts afresh at %d, where its leader's log begins",
                     self.node_id, name, index, old.log_end_offset, offset)
        part = await self.broker.log.run_blocking(topic.reset_partition, index, offset)
        self._epochs.pop(old.path, None)
        part.follows_leader = True
        part.replicated_high_watermark = offset
        self.to_reconcile.discard(key)
        return part

    def _drop_copy(self, key) -> None:
        """A partition this broker no longer replicates (a reassignment moved it away): its
        copy is deleted, offsets too, as Kafka deletes the replica's log; if it comes back here
        it fetches from its leader's log start."""
        if key in self._drops:
            return

        async def drop():
            name, index = key
            try:
                topic = self.broker.log.get_topic(name)
                part = await self.broker.log.run_blocking(topic.reset_partition, index, 0)
                self._epochs.pop(part.path, None)
                _log.info("broker %d: %s-%d is no longer replicated here: its copy deleted", self.node_id, *key)
            except Exception as exc:   # the topic deleted meanwhile, a disk error: tried again at the next change
                _log.warning("broker %d: cannot delete the copy of %s-%d, no longer replicated here: %s",
                             self.node_id, *key, exc)
            finally:
                del self._drops[key]
        self._drops[key] = asyncio.get_running_loop().create_task(drop())

    # --- leading: the high watermark ----------------------------------------------------------

    def _advance(self, state: LeaderState) -> None:
        part = state.part
        hw = rules.high_watermark(own_end(part), self.node_id, state.isr | state.expanding, state.follower_end)
        if hw > part.replicated_high_watermark:
            part.replicated_high_watermark = hw
            part.high_watermark_moved()
        if state.waiters:
            state.waiters = resolve_passed(state.waiters, part.replicated_high_watermark)

    def isr(self, name: str, index: int) -> list[int]:
        state = self.leading.get((name, index))
        return sorted(state.isr) if state is not None else []

    def advance(self, name: str, index: int) -> None:
        """After an append this leader answered without waiting (acks 0 and 1)."""
        state = self.leading.get((name, index))
        if state is not None:
            self._advance(state)

    def is_leader(self, name: str, index: int) -> bool:
        return (name, index) in self.leading

    async def wait_replicated(self, name: str, index: int, offset: int, timeout_s: float) -> int:
        """Returns the high watermark once it passes `offset` (acks=all)."""
        state = self.leading.get((name, index))
        if state is None:
            raise NotLeaderError("not the leader", topic=name, partition=index)
        self._advance(state)
        if state.part.replicated_high_watermark > offset:
            return state.part.replicated_high_watermark
        return await self._wait(state, state.waiters, offset, timeout_s, f"reach offset {offset}")

    async def wait_log_start(self, name: str, index: int, offset: int, timeout_s: float) -> None:
        """DeleteRecords in a cluster (Kafka's DelayedDeleteRecords): returns once every in-sync
        follower's log starts at `offset` or later, so no new leader serves the records again."""
        state = self.leading.get((name, index))
        if state is None:
            raise NotLeaderError("not the leader", topic=name, partition=index)
        if self._log_start_reached(state, offset):
            return
        await self._wait(state, state.start_waiters, offset, timeout_s, f"delete the records below {offset}")

    @staticmethod
    async def _wait(state: LeaderState, waiters: list, offset: int, timeout_s: float, what: str):
        """Waits (timeout_s at most) for the future listed with `offset` in `waiters` to be
        resolved; ReplicationTimeoutError saying what the in-sync replicas did not do."""
        fut = asyncio.get_running_loop().create_future()
        waiters.append((offset, fut))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            raise ReplicationTimeoutError(f"the in-sync replicas {sorted(state.isr)} did not {what} within "
                                          f"{timeout_s * 1000:.0f} ms", topic=state.key[0],
                                          partition=state.key[1]) from None

    def _log_start_reached(self, state: LeaderState, offset: int) -> bool:
        return all(state.follower_start.get(r, -1) >= offset for r in state.isr if r != self.node_id)

    def _wake_start_waiters(self, state: LeaderState) -> None:
        """After a follower's fetch, or an ISR change (one that left no longer holds it up)."""
        waiting, state.start_waiters = state.start_waiters, []
        for offset, fut in waiting:
            if fut.done():
                continue
            if self._log_start_reached(state, offset):
                fut.set_result(None)
            else:
                state.start_waiters.append((offset, fut))

    def lag(self) -> dict[tuple[str, int], dict[int, int]]:
        """Of each partition led here, each other replica's lag: the offsets this leader holds
        that the replica has not fetched (all of them for a replica not heard from)."""
        out = {}
        for key, state in self.leading.items():
            end = own_end(state.part)
            out[key] = {r: max(0, end - state.follower_end.get(r, 0)) for r in state.replicas if r != self.node_id}
        return out

    # --- leading: followers' fetches ------------------------------------------------------------

    def note_follower(self, state: LeaderState, replica: int, fetch_offset: int, leader_end: int,
                      log_start: int = -1) -> None:
        if rules.caught_up(fetch_offset, leader_end, state.fetched_end.get(replica)):
            state.caught_up[replica] = time.monotonic()
        state.fetched_end[replica] = leader_end
        state.follower_end[replica] = fetch_offset
        state.follower_start[replica] = log_start
        self._wake_start_waiters(state)
        self._advance(state)
        if (replica not in state.isr and replica in state.replicas and not state.pending_isr
                and replica in self.node.view.brokers   # registered: the ISR records its directory id
                and rules.may_join_isr(fetch_offset, state.part.replicated_high_watermark)):
            self._change_isr(state, state.isr | {replica})

    async def _watch_isr(self) -> None:
        lag_s = self.broker.config.replica_lag_time_max_ms / 1000
        while True:
            await asyncio.sleep(ISR_CHECK_S)
            now = time.monotonic()
            for state in list(self.leading.values()):
                if state.pending_isr:
                    continue
                lagging = {r for r in state.isr if r != self.node_id
                           and now - state.caught_up.get(r, state.since) > lag_s}
                if lagging:
                    self._change_isr(state, state.isr - lagging)

    def _change_isr(self, state: LeaderState, isr: set[int]) -> None:
        state.pending_isr = True
        record = self.node.record(*state.key)
        if isr - state.isr and record is not None:
            state.expanding |= isr - state.isr   # until the view is past every change sent
            state.expand_base = max(state.expand_base, record.revision)
        asyncio.get_running_loop().create_task(self._write_isr(state, isr))

    async def _write_isr(self, state: LeaderState, isr: set[int]) -> None:
        name, index = state.key
        record = self.node.record(name, index)
        written = False
        try:
            if record is not None and record.leader == self.node_id and record.leader_epoch == state.epoch:
                new = election.isr_with(record, isr, self.node.directories())
                written = await self.node.metadata.replace_partition(name, index, record, new)
                if written:
                    _log.info("broker %d: %s-%d isr %s -> %s", self.node_id, name, index, list(record.isr),
                              list(new.isr))
        except Exception as exc:
            _log.warning("broker %d: cannot change the isr of %s-%d: %s", self.node_id, name, index, exc)
        finally:
            if not written:   # lost a race or failed: looked at again with the next record (an earlier
                state.pending_isr = False   # change may have applied unseen: `expanding` stays until the view says)

    async def serve_replica_fetch(self, request, replica: int) -> FetchResponse:
        """Broker `replica`'s Fetch: what it holds is noted, and it gets what this leader holds
        durably past its fetch offset, waiting up to max_wait_ms for some."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, request.max_wait_ms) / 1000
        first = True
        while True:
            responses, waits, any_data = [], [], False
            for topic in request.topics:
                parts = []
                name = topic.topic if topic.topic_id == ZERO_UUID else self.node.view.topic_names.get(topic.topic_id)
                for wanted in topic.partitions:
                    if name is None:
                        data, error, part = b"", ErrorCode.UNKNOWN_TOPIC_ID, None
                    else:
                        data, error, part = self._replica_read(name, wanted, replica, first)
                    any_data = any_data or bool(data) or error != ErrorCode.NONE
                    hw = part.replicated_high_watermark if part is not None else -1
                    parts.append(PartitionData(partition_index=wanted.partition, error_code=error, high_watermark=hw,
                                               last_stable_offset=hw,
                                               log_start_offset=part.log_start_offset if part is not None else -1,
                                               records=data or None))
                    if part is not None and error == ErrorCode.NONE and not data:
                        waits.append(part.held_future(wanted.fetch_offset))
                responses.append(FetchResponse.FetchableTopicResponse(topic=name or "", topic_id=topic.topic_id,
                                                                      partitions=parts))
            first = False
            remaining = deadline - loop.time()
            try:
                if any_data or not waits or remaining <= 0:
                    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=responses)
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:   # also when the follower's connection goes: a watch left behind would fail at close
                for w in waits:
                    if not w.cancel() and not w.cancelled():
                        w.exception()   # retrieved: a log closing under it is no news to anyone

    def _replica_read(self, name: str, wanted, replica: int, note: bool):
        state = self.leading.get((name, wanted.partition))
        if state is None:
            return b"", ErrorCode.NOT_LEADER_OR_FOLLOWER, None
        if replica not in state.replicas:
            return b"", ErrorCode.NOT_LEADER_OR_FOLLOWER, state.part
        if 0 <= wanted.current_leader_epoch != state.epoch:
            return b"", (ErrorCode.FENCED_LEADER_EPOCH if wanted.current_leader_epoch < state.epoch
                         else ErrorCode.UNKNOWN_LEADER_EPOCH), state.part
        part = state.part
        end = own_end(part)
        if not part.log_start_offset <= wanted.fetch_offset <= part.log_end_offset:
            return b"", ErrorCode.OFFSET_OUT_OF_RANGE, part   # with the log start: a follower behind starts there
        if note:
            self.note_follower(state, replica, wanted.fetch_offset, end, wanted.log_start_offset)
        if wanted.fetch_offset >= end:
            return b"", ErrorCode.NONE, part
        data, _ = cut_at(part.read_batches(wanted.fetch_offset, max(wanted.partition_max_bytes, 1)), end)
        return data, ErrorCode.NONE, part


class Fetcher:
    """Follows every partition this broker replicates from one leader: one connection, one Fetch
    in flight."""

    def __init__(self, manager: ReplicaManager, leader: int):
        self.manager = manager
        self.leader = leader
        self._wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"replica-fetcher-{leader}")

    def wake(self) -> None:
        self._wake.set()

    def _partitions(self) -> list[tuple[tuple[str, int], int]]:
        return [(key, epoch) for key, (leader, epoch) in self.manager.following.items() if leader == self.leader]

    async def _run(self) -> None:
        peer = PeerConnection(self.manager.node, self.leader, f"pstream-replica-{self.manager.node_id}")
        failing = None   # the error of the current failure episode, logged once
        while True:
            try:
                wanted = self._partitions()
                if not wanted:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                diverged = [(key, epoch) for key, epoch in wanted if key in self.manager.to_reconcile]
                if diverged:
                    await self._reconcile(peer, diverged)
                    wanted = [(key, epoch) for key, epoch in wanted if key not in self.manager.to_reconcile]
                    if not wanted:
                        await asyncio.sleep(RETRY_S)
                        continue
                response = await peer.call(FETCH_KEY, REPLICA_FETCH_VERSION, self._request(wanted), CALL_TIMEOUT_S)
                if response.error_code:
                    raise PStreamError(f"leader {self.leader} refused the replica fetch: error {response.error_code}")
                if failing is not None:
                    _log.info("broker %d: fetching from leader %d again", self.manager.node_id, self.leader)
                    failing = None
                backoff = await self._store(response)
                if backoff:
                    await asyncio.sleep(RETRY_S)
            except asyncio.CancelledError:
                peer.close()
                raise
            except Exception as exc:
                if failing is None or type(exc) is not type(failing):
                    _log.warning("broker %d: fetching from leader %d: %s (retrying every %.1f s)",
                                 self.manager.node_id, self.leader, exc or type(exc).__name__, RETRY_S)
                failing = exc
                await asyncio.sleep(RETRY_S)

    async def _reconcile(self, peer: PeerConnection, diverged) -> None:
        """Asks the leader where this copy's latest epoch ended and cuts the log there if it went
        further; a partition answered with an error stays to reconcile (tried again next round)."""
        log = self.manager.broker.log
        topics: dict[str, list] = {}
        for (name, index), epoch in diverged:
            part = log.get_topic(name).partition(index)
            mine = self.manager.epochs(part).latest_epoch
            if mine == UNDEFINED or part.log_end_offset == part.log_start_offset:
                self.manager.to_reconcile.discard((name, index))   # nothing written: nothing can diverge
                continue
            topics.setdefault(name, []).append(OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                partition=index, current_leader_epoch=epoch, leader_epoch=mine))
        if not topics:
            return
        request = OffsetForLeaderEpochRequest(replica_id=self.manager.node_id, topics=[
            OffsetForLeaderEpochRequest.OffsetForLeaderTopic(topic=name, partitions=parts)
            for name, parts in topics.items()])
        response = await peer.call(EPOCH_KEY, EPOCH_VERSION, request, CALL_TIMEOUT_S)
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.topic, answer.partition)
                if answer.error_code != ErrorCode.NONE or key not in self.manager.to_reconcile:
                    continue
                await self.manager.truncate(key, answer.leader_epoch, answer.end_offset)

    def _request(self, wanted) -> FetchRequest:
        log = self.manager.broker.log
        topics: dict[str, list] = {}
        for (name, index), epoch in wanted:
            part = log.get_topic(name).partition(index)
            topics.setdefault(name, []).append(FetchRequest.FetchPartition(
                partition=index, current_leader_epoch=epoch, fetch_offset=own_end(part), last_fetched_epoch=-1,
                log_start_offset=part.log_start_offset, partition_max_bytes=REPLICA_FETCH_MAX_BYTES))
        # replica_epoch -1: unknown. Kafka's broker epoch (KIP-903) fences a follower back from a
        # restart that lost unflushed data; here a copy is durable before it is fetched past, and
        # one back on an empty disk is fenced by its directory id instead.
        return FetchRequest(replica_state=FetchRequest.ReplicaState(replica_id=self.manager.node_id, replica_epoch=-1),
                            max_wait_ms=REPLICA_FETCH_WAIT_MS, min_bytes=1, max_bytes=8 * REPLICA_FETCH_MAX_BYTES,
                            isolation_level=0, session_id=0, session_epoch=-1,
                            topics=[FetchRequest.FetchTopic(topic=name, topic_id=log.get_topic(name).topic_id,
                                                            partitions=parts) for name, parts in topics.items()])

    async def _store(self, response) -> bool:
        """Appends what came, as it is; True if some partition needs a pause (an error)."""
        log = self.manager.broker.log
        backoff = False
        for topic in response.responses:
            name = self.manager.node.view.topic_names.get(topic.topic_id)   # v13+ answers by topic id
            if name is None or name not in log:
                continue
            for data in topic.partitions:
                key = (name, data.partition_index)
                if key not in self.manager.following:
                    continue
                part = log.get_topic(name).partition(data.partition_index)
                if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and own_end(part) < data.log_start_offset:
                    await self.manager.restart_at(key, data.log_start_offset)
                    continue
                if data.error_code != ErrorCode.NONE:
                    backoff = True
                    if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:   # ahead: its epoch's end says where to cut
                        _log.warning("broker %d: %s-%d is ahead of leader %d at the same leader epoch: reconciling",
                                     self.manager.node_id, *key, self.leader)
                        self.manager.to_reconcile.add(key)
                    continue
                if part.log_start_offset < data.log_start_offset <= own_end(part):   # retention, DeleteRecords
                    await self.manager.broker.log.run_blocking(part.delete_records, data.log_start_offset)
                records = data.records
                if records:
                    await self._append(part, memoryview(records))
                if data.high_watermark > part.replicated_high_watermark:
                    part.replicated_high_watermark = data.high_watermark
        return backoff

    async def _append(self, part, records: memoryview) -> None:
        if len(records) >= _core.BATCH_HEADER_SIZE and part.log_end_offset == part.log_start_offset:
            head = _core.peek_batch(records, 0)
            if head.base_offset < part.log_end_offset <= head.base_offset + head.last_offset_delta:
                # The leader's log start falls inside its first batch (DeleteRecords): an empty
                # copy starts at that batch instead, as Kafka's follower does.
                part = await self.manager.restart_at((part.topic, part.number), head.base_offset)
        pending = []
        position = 0
        epochs = self.manager.epochs(part)
        while position + _core.BATCH_HEADER_SIZE <= len(records):
            head = _core.peek_batch(records, position)
            if position + head.size > len(records):
                break
            epochs.assign(head.partition_leader_epoch, head.base_offset)   # a new epoch starts here
            if head.is_transactional and not part.has_transactions:   # read with its LSO once it leads
                await self.manager.broker.log.run_blocking(part.note_transactions)
            pending.append(part.submit_batch(records[position:position + head.size], replica=True, wake=False))
            position += head.size
        if pending:
            part.wake_shard()
            try:
                for p in pending:
                    await part.wait_appended(p)
            except ReplicaOffsetError as exc:
                _log.warning("broker %d: %s", self.manager.node_id, exc)
