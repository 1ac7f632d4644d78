"""A deterministic simulator of one replicated partition: the broker's own decision code
(pstream.cluster.election, .rules, .epochs, .state) run by simulated brokers over a simulated
network and a simulated etcd, in virtual time, from one random seed.

- time: an event queue in virtual milliseconds; nothing sleeps, nothing reads a clock;
- network: every message is delayed, and may be dropped or duplicated; links can be cut both ways
  for a while (a partition), between brokers and between a broker and etcd;
- etcd: a linearizable register (each request takes effect at one instant, in arrival order) with
  revisions, compare-and-swap and leases that expire when not renewed; watches deliver every
  change in revision order to each broker, over its (possibly cut) link;
- brokers: a log whose entries become durable after a simulated fsync; a crash keeps only the
  durable prefix (and the epoch cache, as its checkpoint file survives) and loses every other
  piece of state; a pause (SIGSTOP) freezes a broker while time and leases run on;
- clients: producers with acks=all that send each value once to whoever they believe leads, and
  consumers that read from the leader up to its high watermark;
- administrators (operations=True, with more brokers than replicas): preferred-leader elections
  and reassignments to random targets, started and cancelled through any broker's view, which
  the controller completes once the joining replicas are in sync; a broker that stops being a
  replica deletes its copy, and fetches it all again if it comes back.

The checks (Simulation.check): no acknowledged record lost, no two brokers leading one epoch, no
record a consumer read vanishes or changes, no offset acknowledged twice.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from pstream.cluster import reassignment, rules
from pstream.cluster.election import elect_preferred, isr_with, may_lead, presumed_live, reconcile
from pstream.cluster.epochs import LeaderEpochCache
from pstream.cluster.state import NO_LEADER, PartitionRecord

LEASE_MS = 1000
RENEW_MS = LEASE_MS // 3
FETCH_TIMEOUT_MS = 300
LAG_MAX_MS = 400
FSYNC_MS = (1, 8)
NET_MS = (1, 15)
FAULT_RATE = 0.03   # per client event (one every ~22 ms): a fault every ~0.7 s
OPERATION_RATE = 0.01   # with operations: an administrator's request every ~2 s


@dataclass
class Entry:
    offset: int
    epoch: int
    value: str


class Etcd:
    """A linearizable register with leases (the partition record, the brokers, the controller)."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.revision = 0
        self.data: dict[str, tuple[object, int, int]] = {}   # key -> (value, mod revision, lease)
        self.leases: dict[int, int] = {}                     # lease -> expiry time
        self.next_lease = 1

    def _put(self, key: str, value, lease: int = 0) -> None:
        self.revision += 1
        self.data[key] = (value, self.revision, lease)
        self.sim.notify(key, value, self.revision)

    def _delete(self, key: str) -> None:
        if key in self.data:
            self.revision += 1
            del self.data[key]
            self.sim.notify(key, None, self.revision)

    def expire(self) -> None:
        now = self.sim.now
        for lease, until in list(self.leases.items()):
            if until <= now:
                del self.leases[lease]
                for key in [k for k, (_, _, ls) in self.data.items() if ls == lease]:
                    self._delete(key)

    # requests (each applied at once, when it arrives)
    def grant(self) -> int:
        lease = self.next_lease
        self.next_lease += 1
        self.leases[lease] = self.sim.now + LEASE_MS
        return lease

    def renew(self, lease: int) -> bool:
        if lease not in self.leases:
            return False
        self.leases[lease] = self.sim.now + LEASE_MS
        return True

    def put_if_absent(self, key: str, value, lease: int = 0) -> bool:
        if key in self.data or (lease and lease not in self.leases):
            return False
        self._put(key, value, lease)
        return True

    def put(self, key: str, value, lease: int = 0) -> bool:
        if lease and lease not in self.leases:
            return False
        self._put(key, value, lease)
        return True

    def cas(self, key: str, revision: int, value) -> bool:
        if key not in self.data or self.data[key][1] != revision:
            return False
        self._put(key, value)
        return True

    def snapshot(self) -> dict:
        return {k: (v, rev) for k, (v, rev, _) in self.data.items()}


@dataclass
class LeaderState:
    epoch: int
    isr: set
    since: int
    follower_end: dict = field(default_factory=dict)
    fetched_end: dict = field(default_factory=dict)
    caught_up: dict = field(default_factory=dict)
    waiters: list = field(default_factory=list)   # (offset, client callback)
    pending_isr: bool = False
    expanding: set = field(default_factory=set)   # added by an ISR change whose outcome the view does not show yet
    expand_base: int = 0                          # the record revision that change compared against


class Broker:
    def __init__(self, sim: Simulation, node: int):
        self.sim = sim
        self.node = node
        self.log: list[Entry] = []
        self.durable = 0
        self.epochs = LeaderEpochCache(None)
        self.alive = True
        self.paused_until = 0
        self.incarnation = 0
        self.disk = 0             # its data directory's id: new when the disk is replaced by an empty one
        self.reset_memory()

    def reset_memory(self) -> None:
        self.incarnation += 1
        self.lease = 0
        self.view: dict[str, tuple[object, int]] = {}
        self.view_revision = 0      # the etcd revision the view is at
        self.loaded_once = False    # a snapshot came: watch events apply from then on
        self.watch_gap = 0          # the revision of an event lost (a cut link): reload past it
        self.watch_clock = 0        # watch events arrive in order: none before this time
        self.inbox: dict = {}       # revision -> (key, value): applied strictly in revision order, as etcd's
                                    # watch delivers them (those before the snapshot are dropped)
        self.ever_seen: set = set()
        self.started_at = self.sim.now
        self.leading: LeaderState | None = None
        self.following: tuple[int, int] | None = None   # (leader, epoch)
        self.to_reconcile = False
        self.fetching = False
        self.hw = 0
        self.syncing = False

    # --- the view and roles ---------------------------------------------------------------

    @property
    def record(self) -> PartitionRecord | None:
        got = self.view.get("partition")
        return got[0] if got else None

    def on_watch(self, key: str, value, revision: int) -> None:
        if revision > self.view_revision:
            self.inbox[revision] = (key, value)
            if self.loaded_once:
                self.drain()

    def drain(self) -> None:
        while self.view_revision + 1 in self.inbox:
            self.view_revision += 1
            key, value = self.inbox.pop(self.view_revision)
            if value is None:
                self.view.pop(key, None)
            else:
                self.view[key] = (value, self.view_revision)
            if key == "controller" and value is None:
                self.sim.etcd_call(self, lambda etcd: etcd.put_if_absent("controller", self.node, self.lease))
            self.apply()

    def registrations(self) -> dict:
        """{node: its data directory id} of the registered brokers, as this broker sees them."""
        return {int(k.split("/")[1]): v for k, (v, _) in self.view.items() if k.startswith("brokers/")}

    @property
    def registration(self) -> str:
        return f"disk{self.disk}"

    def live(self) -> set:
        return set(self.registrations())

    def apply(self) -> None:
        record = self.record
        if record is None:
            return
        self.ever_seen |= self.live()
        if self.view.get("controller", (None,))[0] == self.node:
            since = self.sim.now - self.started_at
            if since < LEASE_MS:
                self.sim.later(LEASE_MS - since + 1, self.apply)   # look again once the grace is over
            registered = self.registrations()
            live = presumed_live(set(registered), self.ever_seen, record.replicas, since, LEASE_MS)
            wanted = reconcile(record, live, registered)
            completed = reassignment.complete(wanted or record)   # as ClusterNode._control
            if completed is not None:
                self.sim.operated["completed"] = self.sim.operated.get("completed", 0) + 1
            wanted = completed or wanted
            if wanted is not None:
                revision = self.view["partition"][1]
                self.sim.etcd_call(self, lambda etcd: etcd.cas("partition", revision, wanted))
        if may_lead(record, self.node, self.registration):
            if self.leading is None or self.leading.epoch != record.leader_epoch:
                self.fail_waiters()
                self.leading = LeaderState(record.leader_epoch, set(record.isr), self.sim.now)
                self.epochs.assign(record.leader_epoch, len(self.log))
                self.sim.note_leader(record.leader_epoch, self.node)
            self.leading.isr = set(record.isr)
            self.leading.pending_isr = False
            if self.view["partition"][1] > self.leading.expand_base:
                self.leading.expanding = set()   # the view is past that change: its outcome is in it
            self.following = None
            self.advance()
        elif self.node not in record.replicas:   # moved away: its copy goes (ReplicaManager._drop_copy)
            self.fail_waiters()
            self.leading = None
            self.following = None
            if self.log:
                self.log, self.durable, self.hw = [], 0, 0
                self.epochs = LeaderEpochCache(None)
        else:
            self.fail_waiters()
            self.leading = None
            if record.leader not in (NO_LEADER, self.node) and self.following != (record.leader, record.leader_epoch):
                self.following = (record.leader, record.leader_epoch)
                self.to_reconcile = True
            self.fetch()

    def fail_waiters(self) -> None:
        if self.leading is not None:
            for _, answer in self.leading.waiters:
                answer(None)
            self.leading.waiters = []

    # --- the log ---------------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        self.log.append(entry)
        self.sync()

    def sync(self) -> None:
        if self.syncing or self.durable == len(self.log):
            return
        self.syncing = True
        target, incarnation = len(self.log), self.incarnation
        self.sim.later(self.sim.rng.randint(*FSYNC_MS), lambda: self.synced(target, incarnation))

    def synced(self, target: int, incarnation: int) -> None:
        if incarnation != self.incarnation:   # crashed meanwhile: that fsync never happened
            return
        self.syncing = False
        self.durable = max(self.durable, min(target, len(self.log)))
        self.advance()
        self.sync()
        self.fetch()

    def truncate(self, offset: int) -> None:
        if offset < len(self.log):
            del self.log[offset:]
            self.durable = min(self.durable, offset)
            self.epochs.truncate_from(offset)
            self.hw = min(self.hw, offset)

    # --- leading -----------------------------------------------------------------------------

    def advance(self) -> None:
        state = self.leading
        if state is None:
            return
        hw = rules.high_watermark(self.durable, self.node, state.isr | state.expanding, state.follower_end)
        self.hw = max(self.hw, hw)
        keep = []
        for offset, answer in state.waiters:
            if offset < self.hw:
                answer(offset)
            else:
                keep.append((offset, answer))
        state.waiters = keep

    def produce(self, value: str, answer) -> None:
        state = self.leading
        if state is None:
            answer(None)
            return
        held = next((e.offset for e in self.log if e.value == value), None)
        if held is not None:   # a duplicate (the network repeated it): an idempotent producer's retry
            state.waiters.append((held, answer))
            self.advance()
            return
        entry = Entry(len(self.log), state.epoch, value)
        self.sim.note_append(state.epoch, self.node)
        self.append(entry)
        state.waiters.append((entry.offset, answer))

    def serve_fetch(self, replica: int, epoch: int, offset: int):
        state = self.leading
        if state is None or epoch != state.epoch or offset > len(self.log) or replica not in self.record.replicas:
            return None
        if rules.caught_up(offset, self.durable, state.fetched_end.get(replica)):
            state.caught_up[replica] = self.sim.now
        state.fetched_end[replica] = self.durable
        state.follower_end[replica] = offset
        self.advance()
        if replica not in state.isr and not state.pending_isr and rules.may_join_isr(offset, self.hw):
            self.change_isr(state.isr | {replica})
        return [Entry(e.offset, e.epoch, e.value) for e in self.log[offset:self.durable]], self.hw

    def check_lag(self) -> None:
        state = self.leading
        if state is None or state.pending_isr:
            return
        lagging = {r for r in state.isr if r != self.node
                   and self.sim.now - state.caught_up.get(r, state.since) > LAG_MAX_MS}
        if lagging:
            self.change_isr(state.isr - lagging)

    def change_isr(self, isr: set) -> None:
        record, revision = self.view["partition"]
        state = self.leading
        state.pending_isr = True
        if isr - state.isr:   # Kafka's maximal ISR: counted in the high watermark from now on
            state.expanding |= isr - state.isr
            state.expand_base = max(state.expand_base, revision)
        new = isr_with(record, isr, self.registrations())

        def done(ok):
            if ok is False and self.leading is state:
                state.pending_isr = False   # (an earlier change may have applied: expanding stays)
        self.sim.etcd_call(self, lambda etcd: etcd.cas("partition", revision, new)
                           if record.leader == self.node else False, done)

    def epoch_end(self, epoch: int):
        if self.leading is None:
            return None
        return self.epochs.end_offset_for(epoch, len(self.log))

    # --- following ---------------------------------------------------------------------------

    def fetch(self) -> None:
        if self.following is None or self.fetching or not self.running or len(self.log) > self.durable:
            return   # (fetches go once what came last is durable: the fetch offset says what it holds)
        leader, epoch = self.following
        self.fetching = True
        incarnation = self.incarnation
        self.sim.later(FETCH_TIMEOUT_MS, lambda: self.fetch_timeout(incarnation, leader, epoch))
        if self.to_reconcile:
            if self.epochs.latest_epoch == rules.UNDEFINED or not self.log:
                self.to_reconcile = False
            else:
                mine = self.epochs.latest_epoch
                self.sim.send(self, leader, lambda b: b.epoch_end(mine),
                              lambda answer: self.reconciled(answer, incarnation, leader, epoch, mine))
                return
        offset = self.durable
        self.sim.send(self, leader, lambda b: b.serve_fetch(self.node, epoch, offset),
                      lambda answer: self.fetched(answer, incarnation, leader, epoch, offset))

    def fetch_timeout(self, incarnation, leader, epoch) -> None:
        if incarnation == self.incarnation and self.fetching and self.following == (leader, epoch):
            self.fetching = False
            self.fetch()

    def answered(self, answer, incarnation, leader, epoch) -> bool:
        """Whether an answer to this follower's request is still wanted and says something (an
        error: fetch again in a while)."""
        if incarnation != self.incarnation or self.following != (leader, epoch) or not self.fetching:
            return False
        self.fetching = False
        if answer is None:
            self.sim.later(20, self.fetch)
            return False
        return True

    def reconciled(self, answer, incarnation, leader, epoch, mine) -> None:
        if not self.answered(answer, incarnation, leader, epoch):
            return
        if self.to_reconcile:
            answer_epoch, end = answer
            target = rules.truncation_point(answer_epoch, end, mine,
                                            self.epochs.end_offset_for(answer_epoch, len(self.log))[1], self.hw, 0)
            self.truncate(target)
            self.to_reconcile = False
        self.sim.later(1, self.fetch)

    def fetched(self, answer, incarnation, leader, epoch, offset) -> None:
        if not self.answered(answer, incarnation, leader, epoch):
            return
        entries, hw = answer
        if offset != self.durable or len(self.log) != self.durable:
            self.sim.later(1, self.fetch)   # its log moved meanwhile (a stale answer): ask again
            return
        for e in entries:
            if e.offset != len(self.log):
                break
            self.epochs.assign(e.epoch, e.offset)
            self.log.append(e)
        self.hw = max(self.hw, min(hw, len(self.log)))
        if len(self.log) > self.durable:
            self.sync()   # the next fetch goes once this copy is durable (synced -> fetch)
        else:
            self.sim.later(5, self.fetch)

    # --- life ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.alive and self.sim.now >= self.paused_until

    def start(self) -> None:
        incarnation = self.incarnation
        self.started_at = self.sim.now

        def granted(lease):
            if lease is None or incarnation != self.incarnation:
                if incarnation == self.incarnation and self.alive:
                    self.sim.later(50, self.start)
                return
            self.lease = lease
            self.sim.etcd_call(self, lambda etcd: etcd.put(f"brokers/{self.node}", self.registration, lease))
            self.sim.etcd_call(self, lambda etcd: etcd.put_if_absent("controller", self.node, lease))
            self.reload()
            self.sim.later(RENEW_MS, lambda: self.renew(incarnation))
        self.sim.etcd_call(self, lambda etcd: etcd.grant(), granted)
        self.sim.later(500, lambda: self.start_again() if incarnation == self.incarnation and self.alive
                       and not self.lease else None)   # the grant or its answer was lost: again

    def reload(self) -> None:
        self.sim.etcd_call(self, lambda etcd: (etcd.snapshot(), etcd.revision), self.loaded)

    def loaded(self, answer) -> None:
        snapshot, revision = answer
        if revision < self.view_revision:
            return   # an older snapshot than what the watch already brought
        self.view = dict(snapshot)
        self.view_revision = revision
        self.loaded_once = True
        if revision >= self.watch_gap:   # (a snapshot from before the loss does not mend it)
            self.watch_gap = 0
        self.inbox = {rev: event for rev, event in self.inbox.items() if rev > revision}
        self.drain()   # etcd's watch resumes right after the snapshot's revision
        if self.view.get("controller") is None:
            self.sim.etcd_call(self, lambda etcd: etcd.put_if_absent("controller", self.node, self.lease))
        self.apply()

    def renew(self, incarnation) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        lease = self.lease

        def answered(ok):
            if ok is False and incarnation == self.incarnation and self.lease == lease:
                self.sim.later(1, self.start_again)   # expired: register again (a new lease)
        self.sim.etcd_call(self, lambda etcd: etcd.renew(lease), answered)
        self.sim.later(RENEW_MS, lambda: self.renew(incarnation))

    def start_again(self) -> None:
        """Its lease expired: a new registration, and a new watch from a new snapshot."""
        self.incarnation += 1
        self.fetching = False
        self.lease = 0
        self.loaded_once = False
        self.inbox = {}
        self.start()

    def crash(self) -> None:
        self.alive = False
        del self.log[self.durable:]
        self.epochs.truncate_from(len(self.log))
        self.reset_memory()

    def wipe(self) -> None:
        """Its disk is replaced by an empty one (a crash first)."""
        self.crash()
        self.log = []
        self.durable = 0
        self.epochs = LeaderEpochCache(None)
        self.disk += 1

    def restart(self) -> None:
        self.alive = True
        self.epochs.truncate_from(len(self.log))
        self.start()
        self.sim.later(100, self.tick)

    def tick(self) -> None:
        if not self.alive:
            return
        if self.running:
            if (self.watch_gap or not self.loaded_once) and self.lease:
                self.reload()
            if self.lease and self.loaded_once and f"brokers/{self.node}" not in self.view:
                lease = self.lease   # its registration was lost (or its lease expired): again
                self.sim.etcd_call(self, lambda etcd: etcd.put(f"brokers/{self.node}", self.registration, lease))
            if self.view.get("controller", (None,))[0] == self.node:
                self.apply()   # a write lost on the way is tried again (the broker retries on errors)
            self.check_lag()
            self.fetch()
        self.sim.later(100, self.tick)


class Simulation:
    def __init__(self, seed: int, brokers: int = 3, faults: bool = True, replicas: int | None = None,
                 operations: bool = False):
        self.rng = random.Random(seed)
        self.operations = operations
        self.operated: dict[str, int] = {}   # what the administrators' requests did, by kind
        self.seed = seed
        self.now = 0
        self.queue: list = []
        self.seq = 0
        self.etcd = Etcd(self)
        self.brokers = {n: Broker(self, n) for n in range(1, brokers + 1)}
        self.cuts: dict[frozenset, int] = {}     # link -> until
        self.faults = faults
        self.acked: dict[str, int] = {}           # value -> offset
        self.read: dict[int, str] = {}            # offset -> value, as consumers saw it
        self.epoch_leaders: dict[int, set] = {}   # epoch -> brokers that became its leader
        self.epoch_writers: dict[int, set] = {}   # epoch -> brokers that appended in it
        self.violations: list[str] = []
        self.sent = 0
        replicas = tuple(self.brokers)[:replicas or brokers]
        self.etcd.data["partition"] = (PartitionRecord(replicas, replicas[0], 0, replicas,
                                                       isr_incarnations=tuple("disk0" for _ in replicas)), 1, 0)
        self.etcd.revision = 1

    # --- the machinery ---------------------------------------------------------------------

    def later(self, delay: int, fn) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (self.now + max(delay, 0), self.seq, fn))

    def link_up(self, a, b) -> bool:
        return self.cuts.get(frozenset((a, b)), -1) < self.now

    def deliver(self, src, dst, fn) -> None:
        """fn runs at dst after a network delay, unless the link is cut or the message is lost;
        sometimes twice (a duplicate)."""
        if not self.link_up(src, dst) or (self.faults and self.rng.random() < 0.02):
            return
        copies = 2 if self.faults and self.rng.random() < 0.02 else 1
        for _ in range(copies):
            self.later(self.rng.randint(*NET_MS), lambda: self.arrive(dst, fn))

    def arrive(self, dst, fn) -> None:
        if dst == "etcd" or dst == "client":
            fn()
            return
        broker = self.brokers[dst]
        if not broker.alive:
            return
        if self.now < broker.paused_until:
            self.later(broker.paused_until - self.now, lambda: self.arrive(dst, fn))
            return
        fn()

    def etcd_call(self, broker: Broker, op, answer=None) -> None:
        incarnation = broker.incarnation

        def at_etcd():
            self.etcd.expire()
            result = op(self.etcd)
            if answer is not None:
                self.deliver("etcd", broker.node, lambda: answer(result) if broker.incarnation == incarnation
                             else None)
        self.deliver(broker.node, "etcd", at_etcd)

    def send(self, src: Broker, dst: int, handle, answer) -> None:
        def at_dst():
            result = handle(self.brokers[dst])
            self.deliver(dst, src.node, lambda: answer(result))
        self.deliver(src.node, dst, at_dst)

    def notify(self, key, value, revision) -> None:
        """etcd's watch: one ordered stream per broker; an event a cut link or a loss eats leaves a
        gap the broker repairs by reloading (as a watch client re-syncs)."""
        for broker in self.brokers.values():
            if not broker.alive or not broker.lease:
                continue
            if not self.link_up("etcd", broker.node) or (self.faults and self.rng.random() < 0.02):
                broker.watch_gap = max(broker.watch_gap, revision)
                continue
            incarnation = broker.incarnation
            at = max(broker.watch_clock, self.now + self.rng.randint(*NET_MS))
            broker.watch_clock = at
            self.later(at - self.now, lambda b=broker, i=incarnation: self.arrive(
                b.node, lambda: b.on_watch(key, value, revision) if b.incarnation == i else None))

    def note_leader(self, epoch, node) -> None:
        self.epoch_leaders.setdefault(epoch, set()).add(node)

    def note_append(self, epoch, node) -> None:
        self.epoch_writers.setdefault(epoch, set()).add(node)

    # --- clients -------------------------------------------------------------------------------

    def produce(self) -> None:
        """A producer sends one new value to whoever some broker believes leads."""
        self.sent += 1
        value = f"v{self.sent}"
        asked = self.brokers[self.rng.choice(list(self.brokers))]
        record = asked.record if asked.alive else None
        if record is None or record.leader == NO_LEADER:
            return

        def acked(offset):
            if offset is not None:
                if value in self.acked and self.acked[value] != offset:
                    self.violations.append(f"{value} acknowledged at {self.acked[value]} and {offset}")
                self.acked[value] = offset
        self.deliver("client", record.leader,
                     lambda: self.brokers[record.leader].produce(
                         value, lambda off: self.deliver(record.leader, "client", lambda: acked(off))))

    def consume(self) -> None:
        leader = self.brokers[self.rng.choice(list(self.brokers))]
        if not leader.running or leader.leading is None:
            return
        for e in leader.log[:leader.hw]:
            seen = self.read.get(e.offset)
            if seen is not None and seen != e.value:
                self.violations.append(f"offset {e.offset} read as {seen}, later as {e.value} (t={self.now})")
            self.read[e.offset] = e.value

    # --- faults --------------------------------------------------------------------------------

    def fault(self) -> None:
        kind = self.rng.random()
        node = self.rng.choice(list(self.brokers))
        broker = self.brokers[node]
        if kind < 0.3 and broker.alive:
            broker.wipe() if kind < 0.05 else broker.crash()
            self.later(self.rng.randint(100, 3000), broker.restart)
        elif kind < 0.5 and broker.alive:
            # past its lease, sometimes; a pause only ever extends (what waits for it stays in order)
            broker.paused_until = max(broker.paused_until, self.now + self.rng.randint(200, 2500))
        else:
            other = self.rng.choice([n for n in self.brokers if n != node] + ["etcd"])
            self.cuts[frozenset((node, other))] = self.now + self.rng.randint(100, 3000)

    def operate(self) -> None:
        """An administrator's request through some broker, decided on its view and written by
        compare-and-swap on the revision it saw (ElectLeaders, AlterPartitionReassignments)."""
        if not self.faults:
            return   # settling: the last requests complete or are cancelled by nobody
        broker = self.brokers[self.rng.choice(list(self.brokers))]
        got = broker.view.get("partition") if broker.running else None
        if got is None:
            return
        record, revision = got
        if reassignment.revert_refusal(record, "p", 0):
            return   # refused, as AlterPartitionReassignments refuses it
        choice = self.rng.random()
        if choice < 0.3:
            kind, (wanted, _) = "preferred", elect_preferred(record, broker.live(), broker.registrations())
        elif choice < 0.65:
            target = tuple(self.rng.sample(list(self.brokers), len(reassignment.original(record))))
            kind, wanted = "reassign", reassignment.start(record, target)
        else:
            kind, wanted = "cancel", reassignment.cancel(record)
        if wanted is not None:
            self.operated[kind] = self.operated.get(kind, 0) + 1
            self.etcd_call(broker, lambda etcd: etcd.cas("partition", revision, wanted))

    # --- running -------------------------------------------------------------------------------

    def expire_leases(self) -> None:
        self.etcd.expire()
        self.later(50, self.expire_leases)

    def run(self, ms: int = 20_000, settle_ms: int = 8_000) -> Simulation:
        self.later(50, self.expire_leases)
        for broker in self.brokers.values():
            broker.start()
            self.later(100, broker.tick)
        t = 0
        while t < ms:
            t += self.rng.randint(5, 40)
            self.later(t, self.produce)
            if self.rng.random() < 0.3:
                self.later(t, self.consume)
            if self.faults and self.rng.random() < FAULT_RATE:
                self.later(t, self.fault)
            if self.operations and self.rng.random() < OPERATION_RATE:
                self.later(t, self.operate)
        end = ms + settle_ms
        self.later(ms, self.heal)
        while self.queue and self.queue[0][0] <= end:
            self.now, _, fn = heapq.heappop(self.queue)
            fn()
        self.now = end
        return self

    def heal(self) -> None:
        """No new faults; cut links mend now, pauses end on their own (within the settling time)."""
        self.faults = False
        self.cuts.clear()

    # --- the checks --------------------------------------------------------------------------------

    def check(self) -> list[str]:
        problems = list(self.violations)
        for epoch, nodes in self.epoch_writers.items():
            if len(nodes) > 1:
                problems.append(f"epoch {epoch} written by brokers {sorted(nodes)}")
        for epoch, nodes in self.epoch_leaders.items():
            if len(nodes) > 1:
                problems.append(f"epoch {epoch} led by brokers {sorted(nodes)}")
        record = self.etcd.data["partition"][0]
        if not record.isr or not set(record.isr) <= set(record.replicas):
            problems.append(f"the ISR is empty or not inside the replicas: {record}")
        if record.leader not in (NO_LEADER, *record.replicas):
            problems.append(f"the leader is not a replica: {record}")
        if record.leader == NO_LEADER:
            last = record.isr[-1]
            if record.incarnation_of(last) not in ("", self.brokers[last].registration):
                return problems   # its last in-sync replica lost its disk: offline is the right answer
            problems.append(f"no leader after healing: {record}")
            return problems
        leader = self.brokers[record.leader]
        final = {e.offset: e.value for e in leader.log}
        for value, offset in self.acked.items():
            if final.get(offset) != value:
                problems.append(f"acknowledged {value}@{offset} lost: the leader holds {final.get(offset)!r}")
        for offset, value in self.read.items():
            if final.get(offset) != value:
                problems.append(f"{value}@{offset} was read, then vanished: the leader holds {final.get(offset)!r}")
        offsets = list(self.acked.values())
        if len(offsets) != len(set(offsets)):
            problems.append("an offset was acknowledged for two values")
        for node in record.isr:
            other = self.brokers[node]
            mine = [(e.offset, e.value) for e in other.log[:leader.hw]]
            if mine != [(e.offset, e.value) for e in leader.log[:leader.hw]]:
                problems.append(f"in-sync replica {node} differs from leader {leader.node} below the high watermark")
        return problems
