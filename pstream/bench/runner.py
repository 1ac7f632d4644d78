"""Runs the workloads against one broker, N times, and reports: a table per run, the
medians, and one JSON document per run. Each phase records the broker's CPU seconds (and
per GB produced) and peak RSS. A started broker gets a fresh data directory per repetition.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import pstream
from pstream.bench import workloads
from pstream.bench.brokers import BrokerUnderTest, ProcessProbe
from pstream.bench.workloads import ProduceSpec


@dataclass
class Plan:
    sizes: list[int] = field(default_factory=lambda: [100, 1024])
    partitions: list[int] = field(default_factory=lambda: [1, 6])
    compressions: list[str] = field(default_factory=lambda: ["none", "lz4"])
    produce_bytes: int = 256 << 20       # per produce phase (messages = bytes / size)
    max_messages: int = 1_000_000
    producers: int = 0                    # > 1 adds a many-producers phase
    rate: int = 5000
    latency_seconds: float = 10.0
    phase_seconds: float = 120.0
    workloads: tuple[str, ...] = ("produce", "consume", "latency", "join")
    transaction_records: int = 1000       # the transactions workload: records per transaction
    request_rates: list[int] = field(default_factory=lambda: [1000, 5000, 20000])   # the requests workload
    capacity_clients: int = 8             # the capacity workload: closed-loop producers, a partition each

    def produce_specs(self) -> list[ProduceSpec]:
        specs = [ProduceSpec(size, parts, codec, min(self.produce_bytes // size, self.max_messages))
                 for size in self.sizes for parts in self.partitions for codec in self.compressions]
        if self.producers > 1:
            specs.append(ProduceSpec(1024, max(self.partitions), "none",
                                     min(self.produce_bytes // 1024, self.max_messages), self.producers))
        return specs


def run_once(broker: BrokerUnderTest, plan: Plan, log=print) -> list[dict]:
    """Every workload of the plan once against a started (or external) broker."""
    probe = ProcessProbe(broker.pid)
    results = []

    def phase(fn, *args) -> dict:
        probe.start_phase()
        result = fn(*args)
        result.update(probe.end_phase())
        if result.get("cpu_seconds") is not None and result.get("bytes") and result["workload"].startswith(
                "produce"):
            result["cpu_s_per_gb"] = round(result["cpu_seconds"] / (result["bytes"] / 1e9), 3)
        if result.get("cpu_seconds") is not None and result.get("requests") and "fetch_requests" not in result:
            result["cpu_us_per_request"] = round(result["cpu_seconds"] * 1e6 / result["requests"], 1)
        results.append(result)
        log(f"  {describe(result)}")
        return result

    produced = []
    if "produce" in plan.workloads or "consume" in plan.workloads:
        for spec in plan.produce_specs():
            if "produce" not in plan.workloads and not (spec.compression == "none" and spec.producers == 1):
                continue
            produced.append((spec, phase(workloads.produce, broker.bootstrap, spec, plan.phase_seconds)))
    if "consume" in plan.workloads:
        for spec, result in produced:
            if spec.compression == "none" and spec.producers == 1 and spec.size == max(plan.sizes):
                phase(workloads.consume, broker.bootstrap, result["topic"], spec.partitions, result["messages"],
                      spec.size, plan.phase_seconds)
    if "latency" in plan.workloads:
        phase(workloads.latency, broker.bootstrap, plan.rate, 1024, plan.latency_seconds)
    if "requests" in plan.workloads:
        _small_requests(plan, broker, phase, log)
    if "capacity" in plan.workloads:
        phase(workloads.request_capacity, broker.bootstrap, plan.capacity_clients, plan.latency_seconds)
    if "join" in plan.workloads:
        phase(workloads.group_join, broker.bootstrap)
    if "transactions" in plan.workloads:
        _transactions(plan, broker, phase)
    return results


def _small_requests(plan: Plan, broker: BrokerUnderTest, phase, log) -> None:
    """One-record produce requests at each rate; at the lowest, again with a consumer tailing the
    topic: the broker CPU it adds, per Fetch it sent, is the cost of a small fetch at the end of a
    partition (cpu_us_per_fetch_request); then the highest rate's topic read from its start, one
    batch per Fetch (small fetches far behind)."""
    per_request = {}
    for rate in plan.request_rates:
        result = phase(workloads.small_produce_requests, broker.bootstrap, rate, 1024, plan.latency_seconds)
        per_request[rate] = result
    low = min(plan.request_rates)
    tail = phase(workloads.small_produce_requests, broker.bootstrap, low, 1024, plan.latency_seconds, 1.0, True)
    alone = per_request[low]
    if tail.get("cpu_seconds") is not None and alone.get("cpu_us_per_request") and tail.get("fetch_requests"):
        fetch_cpu = tail["cpu_seconds"] - alone["cpu_us_per_request"] * tail["requests"] / 1e6
        tail["cpu_us_per_fetch_request"] = round(fetch_cpu * 1e6 / tail["fetch_requests"], 1)
        log(f"    {tail['fetch_requests']:,} fetches at the tail: {tail['cpu_us_per_fetch_request']} us cpu/fetch")
    high = per_request[max(plan.request_rates)]
    phase(workloads.small_fetch_requests, broker.bootstrap, high["topic"], high["messages"], plan.phase_seconds)


def _transactions(plan: Plan, broker: BrokerUnderTest, phase) -> None:
    """Transactional produce (1 KiB, transaction_records per transaction) beside the plain one,
    read_committed and read_uncommitted consume of what it wrote, and the latency of a
    committed record (a transaction every 50 records at the latency rate)."""
    size = 1024
    messages = min(plan.produce_bytes // size, plan.max_messages)
    for parts in plan.partitions:
        for every in (0, plan.transaction_records):
            spec = ProduceSpec(size, parts, "none", messages, transaction_records=every)
            result = phase(workloads.produce, broker.bootstrap, spec, plan.phase_seconds)
            if every:
                for isolation in ("read_committed", "read_uncommitted"):
                    phase(workloads.consume, broker.bootstrap, result["topic"], parts, result["messages"], size,
                          plan.phase_seconds, isolation)
    phase(workloads.latency, broker.bootstrap, plan.rate, size, plan.latency_seconds, 2.0, 0)
    phase(workloads.latency, broker.bootstrap, plan.rate, size, plan.latency_seconds, 2.0, 50)


def describe(r: dict) -> str:
    parts = [f"{r['workload']}:"]
    if "mb_per_s" in r:
        parts.append(f"{r['mb_per_s']} MB/s {r['msgs_per_s']:,} msg/s")
    if "p99_ms" in r:
        parts.append(f"p50 {r['p50_ms']} p90 {r['p90_ms']} p99 {r['p99_ms']} p99.9 {r['p99.9_ms']} "
                     f"max {r['max_ms']} ms")
    if r.get("requests_per_s") and "mb_per_s" not in r:
        parts.append(f"{r['requests_per_s']:,} requests/s")
    if r["workload"] == "first group join":
        parts.append(f"{r['seconds']} s")
    if r.get("cpu_seconds") is not None:
        parts.append(f"cpu {r['cpu_seconds']} s")
        if r.get("cpu_seconds_by_process"):
            parts.append(f"({' + '.join(str(c) for c in r['cpu_seconds_by_process'])} by process)")
    if r.get("cpu_s_per_gb") is not None:
        parts.append(f"({r['cpu_s_per_gb']} s/GB)")
    if r.get("requests"):
        parts.append(f"{r['requests']:,} requests")
    if r.get("cpu_us_per_request") is not None:
        parts.append(f"({r['cpu_us_per_request']} us cpu/request)")
    if r.get("peak_rss_bytes"):
        parts.append(f"rss {r['peak_rss_bytes'] / 2**20:.0f} MiB")
    if r.get("verified") is False:
        parts.append(f"VERIFY FAILED missing {r['missing']} duplicates {r['duplicates']} foreign {r['foreign']}")
    if r.get("complete") is False or r.get("errors"):
        parts.append(f"INCOMPLETE {r.get('errors') or ''}")
    return " ".join(parts)


METRICS = ("mb_per_s", "msgs_per_s", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms", "seconds",
           "cpu_seconds", "cpu_s_per_gb", "peak_rss_bytes", "requests", "requests_per_s", "cpu_us_per_request",
           "cpu_us_per_fetch_request")


def medians(runs: list[list[dict]]) -> dict[str, dict]:
    """workload -> metric -> median over the runs."""
    out: dict[str, dict] = {}
    for run in runs:
        for r in run:
            slot = out.setdefault(r["workload"], {})
            for m in METRICS:
                if r.get(m) is not None:
                    slot.setdefault(m, []).append(r[m])
    return {w: {m: statistics.median(v) for m, v in ms.items()} for w, ms in out.items()}


def run_document(kind: str, bootstrap: str, repetition: int, results: list[dict]) -> dict:
    return {"broker": kind, "bootstrap": bootstrap, "repetition": repetition, "time": time.time(),
            "pstream_version": pstream.__version__, "host": platform.node(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "results": results}


def write_document(directory: str | None, doc: dict) -> str | None:
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{doc['broker']}-{int(doc['time'])}-{doc['repetition']}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return path


def run_repeated(kind: str, plan: Plan, repeat: int, bootstrap: str | None = None, pid: int | None = None,
                 output_dir: str | None = None, log=print, extra: list[str] = (),
                 broker_cpus: set[int] | None = None) -> list[list[dict]]:
    runs = []
    for i in range(repeat):
        log(f"{kind} run {i + 1}/{repeat}")
        with BrokerUnderTest(kind, bootstrap, pid, extra, broker_cpus) as broker:
            results = run_once(broker, plan, log)
        runs.append(results)
        path = write_document(output_dir, run_document(kind, broker.bootstrap, i, results))
        if path:
            log(f"  wrote {path}")
    return runs
