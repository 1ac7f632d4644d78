"""Fetch sessions (KIP-227): a consumer that fetches the same partitions again and again sends
only what changed, and the broker answers only the partitions with something new.

A full fetch with epoch 0 opens a session (the broker remembers its partitions and their fetch
offsets); each incremental fetch names the session and the next epoch, adds or updates the
partitions it lists, drops the forgotten ones, and gets back only the partitions that have
records, an error, or a high watermark, last stable offset or log start that moved since the
last answer. Epoch -1 closes the session. The cache is bounded (Kafka's
max.incremental.fetch.session.cache.slots, 1000): when it is full the least recently used
session goes, and a session idle past min.incremental.fetch.session.eviction.ms (120 s) is
dropped; a client whose session is gone gets FETCH_SESSION_ID_NOT_FOUND and starts a new one.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict

from pstream.protocol.error_codes import ErrorCode

INITIAL_EPOCH, FINAL_EPOCH = 0, -1
CACHE_SLOTS = 1000
EVICTION_S = 120.0


class FetchSession:
    """One consumer's session: its partitions in the order they were added, each with the fetch
    request's partition (offsets, max bytes) and what the last answer told about it."""

    __slots__ = ("id", "epoch", "partitions", "sent", "used")

    def __init__(self, session_id: int):
        self.id = session_id
        self.epoch = 1                                  # the epoch the next incremental fetch must carry
        self.partitions: OrderedDict = OrderedDict()    # (topic key, partition) -> (topic, topic_id, wanted)
        self.sent: dict = {}                            # same key -> (high watermark, LSO, log start) answered
        self.used = time.monotonic()

    def update(self, request, use_ids: bool) -> None:
        """Adds or updates the partitions the request names; drops the forgotten ones."""
        for t in request.topics:
            for p in t.partitions:
                key = (t.topic_id if use_ids else t.topic, p.partition)
                self.partitions[key] = (t.topic, t.topic_id, p)
        for t in request.forgotten_topics_data or ():
            for number in t.partitions:
                key = (t.topic_id if use_ids else t.topic, number)
                self.partitions.pop(key, None)
                self.sent.pop(key, None)

    def changed(self, key, response) -> bool:
        """Whether an incremental answer must carry this partition; remembers what it says."""
        now = (response.high_watermark, response.last_stable_offset, response.log_start_offset)
        moved = self.sent.get(key) != now
        self.sent[key] = now
        return moved or bool(response.error_code) or bool(response.records)


class FetchSessionCache:
    """The broker's fetch sessions, least recently used first."""

    def __init__(self, slots: int = CACHE_SLOTS, eviction_s: float = EVICTION_S):
        self.slots, self.eviction_s = slots, eviction_s
        self.sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self.counters = {"created": 0, "evicted": 0, "incremental_fetches": 0, "not_found": 0}

    def open(self) -> FetchSession:
        """A new session; sessions idle past the eviction time go first, and when the cache is
        still full, the least recently used one."""
        now = time.monotonic()
        while self.sessions:
            oldest_id, oldest = next(iter(self.sessions.items()))
            if len(self.sessions) < self.slots and now - oldest.used < self.eviction_s:
                break
            del self.sessions[oldest_id]
            self.counters["evicted"] += 1
        session_id = random.randint(1, 0x7FFFFFFF)
        while session_id in self.sessions:
            session_id = random.randint(1, 0x7FFFFFFF)
        session = self.sessions[session_id] = FetchSession(session_id)
        self.counters["created"] += 1
        return session

    def close(self, session_id: int) -> None:
        self.sessions.pop(session_id, None)

    def find(self, session_id: int, epoch: int) -> tuple[FetchSession | None, int]:
        """(session, NONE), or (None, FETCH_SESSION_ID_NOT_FOUND / INVALID_FETCH_SESSION_EPOCH)."""
        session = self.sessions.get(session_id)
        if session is None:
            self.counters["not_found"] += 1
            return None, ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        if session.epoch != epoch:
            return None, ErrorCode.INVALID_FETCH_SESSION_EPOCH
        self.sessions.move_to_end(session_id)
        session.used = time.monotonic()
        self.counters["incremental_fetches"] += 1
        return session, ErrorCode.NONE
