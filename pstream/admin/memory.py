"""GET /v1/debug/memory: where the broker's memory is, found without a restart.

Reports the process's resident set and its memory by owner from always-on counters
(`memory_bytes`: the shards' write pools, the segments' index arrays, the frame pool's kept
receive buffers, the request/response budget in use, and Python's tracked heap while
tracemalloc runs), each shard's write pool (capacity, in use, peak, waits, idle releases,
holders), open descriptors against the budget, what the log holds per shard (the write
buffers of the partitions' segments, 4 KiB-aligned C memory outside Python's allocator, and
their index arrays; a walk over every partition), and Python allocation sites by tracemalloc, which the same endpoint switches on
(`?start=1`) and off (`?stop=1`): while it is on, the `top` (default 20) sites that hold the
most memory are listed. tracemalloc slows every Python allocation (~2x here), so it is off
unless asked for. Reads only; the one thing it changes is whether tracemalloc traces. It
sees the node through pstream.admin.view.MetricsView, never the broker.
"""

from __future__ import annotations

import os
import resource
import sys
import tracemalloc

from pstream.admin.http import HttpError
from pstream.admin.view import MetricsView

DEFAULT_TOP = 20
MAX_TOP = 1000
TRACE_FRAMES = 1    # sites by line; more frames cost more memory per traced block
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def rss_bytes() -> int:
    """The resident set size now (Linux: /proc/self/statm), else the peak the kernel reports."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def open_files() -> int:
    """Descriptors the process holds now (Linux: /proc/self/fd), -1 where that is unknown."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1   # less the listing's own
    except OSError:
        return -1


def owners(node: MetricsView) -> dict[str, int]:
    """Bytes by owner, from counters (no walk, no lock): what /metrics exports as
    pstream_memory_bytes{owner}. `python` only while tracemalloc traces (it counts nothing else)."""
    out: dict[str, int] = {}
    if node.log_readable:
        stats = node.log.memory_stats()
        out["write_pool"] = sum(s["in_use_bytes"] for s in stats["write_pool"])
        out["indexes"] = stats["index_bytes"]
    out["frames"] = node.frame_pool_stats()["pooled_bytes"]
    out["requests"] = node.memory_budget().used
    if tracemalloc.is_tracing():
        out["python"] = tracemalloc.get_traced_memory()[0]
    return out


def shard_memory(log) -> list[dict]:
    """Per shard: partitions owned, bytes of segment write buffers and of index arrays."""
    from pstream.log import shard_for

    shards = [{"shard": i, "partitions": 0, "write_buffer_bytes": 0, "index_bytes": 0} for i in range(log.shards)]
    for name in log.topics():
        for part in log.get_topic(name):
            entry = shards[shard_for(name, part.number, log.shards, log.cores)]
            _size, _segments, buffers, indexes = part.stats()
            entry["partitions"] += 1
            entry["write_buffer_bytes"] += buffers
            entry["index_bytes"] += indexes
    return shards


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HttpError(400, f"query parameter {name} must be 1 or 0, got {value!r}")


def _top(query: dict[str, str]) -> int:
    text = query.get("top", str(DEFAULT_TOP))
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        raise HttpError(400, f"query parameter top must be an integer 1..{MAX_TOP}, got {text!r}")
    return int(text)


def tracing(query: dict[str, str], change: bool) -> dict:
    """Applies ?start=1 / ?stop=1 (only when change: POST), then reports tracemalloc's state and,
    while it traces, the top sites. Tracing costs about two thirds of the broker's throughput,
    so a GET (a scraper, a browser's prefetch) must never switch it on."""
    start, stop, top = _flag(query, "start"), _flag(query, "stop"), _top(query)
    if (start or stop) and not change:
        raise HttpError(405, "GET does not change state: POST /v1/debug/memory?start=1 (or ?stop=1)",
                        {"Allow": "POST"})
    if start and stop:
        raise HttpError(400, "start and stop together: ask for one")
    if start and not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)
    if stop and tracemalloc.is_tracing():
        tracemalloc.stop()
    out: dict = {"tracing": tracemalloc.is_tracing()}
    if not out["tracing"]:
        out["hint"] = "POST /v1/debug/memory?start=1 switches allocation tracing on"
        return out
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>")))
    out.update(traced_bytes=current, peak_traced_bytes=peak, overhead_bytes=tracemalloc.get_tracemalloc_memory(),
               top=[{"file": stat.traceback[0].filename, "line": stat.traceback[0].lineno, "size_bytes": stat.size,
                     "count": stat.count} for stat in snapshot.statistics("lineno")[:top]])
    return out


def report(node: MetricsView, query: dict[str, str], change: bool = False) -> dict:
    out: dict = {"rss_bytes": rss_bytes(), "memory_bytes": owners(node), "open_files": open_files()}
    if node.log_readable:
        out["max_open_files"] = node.log.max_open_files
        out["write_pool"] = node.log.memory_stats()["write_pool"]
        shards = shard_memory(node.log)
        out["shards"] = shards
        out["write_buffer_bytes"] = sum(s["write_buffer_bytes"] for s in shards)
        out["index_bytes"] = sum(s["index_bytes"] for s in shards)
    out["frame_pool"] = node.frame_pool_stats()   # receive buffers of large requests, kept for reuse
    out["python"] = {"allocated_blocks": sys.getallocatedblocks()}
    out["tracemalloc"] = tracing(query, change)
    return out
