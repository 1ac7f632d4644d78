"""Client quota enforcement (KIP-13, KIP-55, KIP-124, KIP-219), as Kafka's ClientQuotaManager does it.

The quotas are the ones AlterClientQuotas stored (pstream/broker/client_quotas.py). A request's
quota entity is the most specific configured one for its (user, client id), in Kafka's order:

    user+client, user+default client, user, default user+client, default user+default client,
    default user, client, default client

Each entity's usage is a rate over 11 one-second samples (quota.window.num, quota.window.size
.seconds): produce bytes (producer_byte_rate), fetch bytes (consumer_byte_rate), and the time
requests take as a percentage of one thread (request_percentage; pstream measures a request from
its arrival to its answer, where Kafka counts its network and I/O threads' time). Past the quota
the answer carries throttle_time_ms = (rate - quota) / quota * window, and the connection is not
read for that long (KIP-219): a well-behaved client backs off, a bad one is slowed anyway.
"""

from __future__ import annotations

import collections
import dataclasses

from pstream.security.listeners import ANONYMOUS

SAMPLES = 11             # Kafka's quota.window.num
SAMPLE_S = 1.0           # Kafka's quota.window.size.seconds
MAX_THROTTLE_MS = int(SAMPLES * SAMPLE_S * 1000)
PRODUCE, FETCH = 0, 1    # api keys
KINDS = {"producer_byte_rate": "produce", "consumer_byte_rate": "fetch", "request_percentage": "request",
         "controller_mutation_rate": "mutation", "connection_creation_rate": "connections"}


class Rate:
    """Kafka's SampledStat Rate: the sum over the live samples divided by their span, which counts
    as at least (samples - 1) windows, so a burst after silence is not read as a huge rate."""

    __slots__ = ("samples",)

    def __init__(self):
        self.samples: collections.deque = collections.deque()   # [sample start, total]

    def record(self, value: float, now: float) -> None:
        start = now - now % SAMPLE_S
        if self.samples and self.samples[-1][0] == start:
            self.samples[-1][1] += value
        else:
            self.samples.append([start, value])
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.samples and self.samples[0][0] <= now - SAMPLES * SAMPLE_S:
            self.samples.popleft()

    def window_s(self, now: float) -> float:
        self._expire(now)
        elapsed = now - self.samples[0][0] if self.samples else 0.0
        return max(elapsed, (SAMPLES - 1) * SAMPLE_S)

    def measure(self, now: float) -> float:
        return sum(total for _, total in self.samples) / self.window_s(now)


@dataclasses.dataclass
class EntityUsage:
    rates: dict = dataclasses.field(default_factory=lambda: {kind: Rate() for kind in KINDS.values()})
    throttle_ms: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(KINDS.values(), 0.0))


def _candidates(user: str | None, client: str):
    """The entities to look a (user, client id) up in, most specific first (Kafka's order)."""
    if user is not None:
        yield (("client-id", client), ("user", user))
        yield (("client-id", None), ("user", user))
        yield (("user", user),)
        yield (("client-id", client), ("user", None))
        yield (("client-id", None), ("user", None))
        yield (("user", None),)
    yield (("client-id", client),)
    yield (("client-id", None),)


class QuotaEnforcer:
    def __init__(self, quotas):
        self.quotas = quotas       # ClientQuotas (its .quotas: {entity: {key: value}})
        self.usage: dict[tuple, EntityUsage] = {}

    def _entity(self, principal: str, client_id: str, key: str) -> tuple | None:
        user = principal.partition(":")[2] if principal != ANONYMOUS else "ANONYMOUS"
        for entity in _candidates(user, client_id):
            if key in self.quotas.quotas.get(entity, {}):
                return entity
        return None

    def record(self, principal: str, client_id: str, api_key: int, nbytes: int, seconds: float,
               now: float) -> int:
        """Records a request's use; returns how long its client should be throttled (ms)."""
        if not self.quotas.quotas:
            return 0
        throttle = 0.0
        uses = [("request_percentage", seconds * 100.0)]   # percent of one thread for a second
        if api_key == PRODUCE:
            uses.append(("producer_byte_rate", float(nbytes)))
        elif api_key == FETCH:
            uses.append(("consumer_byte_rate", float(nbytes)))
        for key, amount in uses:
            entity = self._entity(principal, client_id, key)
            if entity is None:
                continue
            quota = self.quotas.quotas[entity][key]
            usage = self.usage.setdefault(entity, EntityUsage())
            rate = usage.rates[KINDS[key]]
            rate.record(amount, now)
            measured = rate.measure(now)
            if quota > 0 and measured > quota:
                ms = min((measured - quota) / quota * rate.window_s(now) * 1000, MAX_THROTTLE_MS)
                usage.throttle_ms[KINDS[key]] += ms
                throttle = max(throttle, ms)
        return int(throttle)

    def mutation(self, principal: str, client_id: str, partitions: int, strict: bool, now: float) -> tuple[bool, int]:
        """KIP-599's controller_mutation_rate for a topic creation or deletion, or new partitions:
        (may it go ahead, throttle ms). Strict (CreateTopics v6+, CreatePartitions v3+, DeleteTopics
        v5+) refuses it while the rate is over the quota, as Kafka's ControllerMutationQuota does;
        older versions are let through and throttled."""
        entity = self._entity(principal, client_id, "controller_mutation_rate") if self.quotas.quotas else None
        if entity is None:
            return True, 0
        quota = self.quotas.quotas[entity]["controller_mutation_rate"]
        usage = self.usage.setdefault(entity, EntityUsage())
        rate = usage.rates["mutation"]

        def throttle() -> int:
            measured = rate.measure(now)
            if quota <= 0 or measured <= quota:
                return 0
            return int(min((measured - quota) / quota * rate.window_s(now) * 1000, MAX_THROTTLE_MS))

        if strict and throttle():
            usage.throttle_ms["mutation"] += throttle()
            return False, throttle()
        rate.record(float(partitions), now)
        ms = throttle()
        usage.throttle_ms["mutation"] += ms
        return True, ms

    def connection(self, ip: str, now: float) -> int:
        """KIP-612's connection_creation_rate of the ip entity (the ip's own, else the default ip's):
        a new connection past it is not served, and closed after the returned throttle (ms)."""
        if not self.quotas.quotas:
            return 0
        entity = next((e for e in ((("ip", ip),), (("ip", None),))
                       if "connection_creation_rate" in self.quotas.quotas.get(e, {})), None)
        if entity is None:
            return 0
        quota = self.quotas.quotas[entity]["connection_creation_rate"]
        usage = self.usage.setdefault(entity, EntityUsage())
        rate = usage.rates["connections"]
        rate.record(1.0, now)
        measured = rate.measure(now)
        if quota <= 0 or measured <= quota:
            return 0
        ms = int(min((measured - quota) / quota * rate.window_s(now) * 1000, MAX_THROTTLE_MS))
        usage.throttle_ms["connections"] += ms
        return ms

    def metrics(self, now: float):
        """[(kind, user, client id, ip, rate, throttle ms total)] for the Prometheus endpoint."""
        for entity, usage in sorted(self.usage.items(), key=lambda kv: repr(kv[0])):
            labels = {t: ("<default>" if n is None else n) for t, n in entity}
            for kind, rate in usage.rates.items():
                if rate.samples or usage.throttle_ms[kind]:
                    yield kind, labels.get("user", ""), labels.get("client-id", ""), labels.get("ip", ""), \
                        rate.measure(now), usage.throttle_ms[kind]
