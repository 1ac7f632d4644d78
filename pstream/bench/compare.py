"""pstream against a peer broker (Tansu first), the same workloads alternating, as ratios.

Repetition i runs pstream then the peer when i is even, the peer then pstream when odd, each
on a freshly started broker, so drift of this machine (disk, thermal) falls on both. Prints
the medians side by side with pstream/peer ratios, and the issue's targets as pass/miss.
"""

from __future__ import annotations

from pstream.bench.brokers import BrokerUnderTest
from pstream.bench.runner import Plan, medians, run_document, run_once, write_document

HIGHER_IS_BETTER = {"mb_per_s", "msgs_per_s"}


def compare(plan: Plan, repeat: int, peer: str = "tansu", output_dir: str | None = None, log=print):
    runs: dict[str, list] = {"pstream": [], peer: []}
    for i in range(repeat):
        order = ("pstream", peer) if i % 2 == 0 else (peer, "pstream")
        for kind in order:
            log(f"{kind} run {i + 1}/{repeat}")
            with BrokerUnderTest(kind) as broker:
                results = run_once(broker, plan, log)
            runs[kind].append(results)
            write_document(output_dir, run_document(kind, broker.bootstrap, i, results))
    return medians(runs["pstream"]), medians(runs[peer])


def ratio_rows(ours: dict, theirs: dict) -> list[list]:
    rows = []
    for workload, metrics in ours.items():
        for metric, value in metrics.items():
            other = theirs.get(workload, {}).get(metric)
            ratio = round(value / other, 2) if other else None
            rows.append([workload, metric, _fmt(metric, value), _fmt(metric, other), ratio])
    return rows


def _fmt(metric: str, value):
    if value is None:
        return None
    if metric == "peak_rss_bytes":
        return f"{value / 2**20:.0f}MiB"
    return value


def targets(ours: dict, theirs: dict) -> list[list]:
    """The issue's targets: [target, pstream, peer, met?]."""
    def get(side, workload, metric):
        return side.get(workload, {}).get(metric)

    def peak(side):
        values = [m["peak_rss_bytes"] for m in side.values() if m.get("peak_rss_bytes")]
        return max(values) if values else None

    rows = []

    def ratio_target(label, workload, metric, at_least):
        a, b = get(ours, workload, metric), get(theirs, workload, metric)
        ok = None if a is None or not b else a / b >= at_least
        rows.append([label, a, b, ok])

    ratio_target("produce 1KiB 1p acks=all >= 1.0x", "produce 1KiB 1p none", "mb_per_s", 1.0)
    ratio_target("produce 1KiB 6p acks=all >= 1.5x", "produce 1KiB 6p none", "mb_per_s", 1.5)
    for workload in ("consume 1KiB 1p", "consume 1KiB 6p"):
        ratio_target(f"{workload} >= 1.0x", workload, "mb_per_s", 1.0)
    lat = next((w for w in ours if w.startswith("latency")), None)
    if lat:
        for metric, limit in (("p99_ms", 10), ("p99.9_ms", 20)):
            a = get(ours, lat, metric)
            rows.append([f"{lat} {metric} <= {limit}", a, get(theirs, lat, metric), None if a is None else a <= limit])
    # Kafka itself waits group.initial.rebalance.delay.ms (3 s) before the first assignment, then
    # answers JoinGroup and SyncGroup: 0.2 s is allowed for those round trips.
    a = get(ours, "first group join", "seconds")
    rows.append(["first group join <= 3 s delay + 0.2 s", a, get(theirs, "first group join", "seconds"),
                 None if a is None else a <= 3.2])
    a, b = peak(ours), peak(theirs)
    rows.append(["peak RSS <= 1/4 of the peer's", _fmt("peak_rss_bytes", a), _fmt("peak_rss_bytes", b),
                 None if not a or not b else a * 4 <= b])
    a, b = get(ours, "produce 1KiB 1p none", "cpu_s_per_gb"), get(theirs, "produce 1KiB 1p none", "cpu_s_per_gb")
    rows.append(["CPU s/GB produced (1KiB 1p) <= the peer's", a, b, None if a is None or b is None else a <= b])
    return rows
