"""`pstream bench`: the end-to-end load tool (pstream/bench/), against one broker or side by side.

    pstream bench                              # starts pstream (fresh data dir per repetition)
    pstream bench --bootstrap 127.0.0.1:9092 --pid 1234   # a running broker (pid: CPU and RSS)
    pstream bench --compare tansu --repeat 3   # alternating with Tansu's memory engine, ratios
"""

from __future__ import annotations

import argparse
import os

from pstream.bench.runner import Plan, medians, run_repeated
from pstream.cli.output import CliError, table

WORKLOADS = ("produce", "consume", "latency", "join", "requests", "transactions", "capacity")
DEFAULT_WORKLOADS = WORKLOADS[:4]   # requests, transactions, capacity: asked for by name


def register(sub, common) -> None:
    p = sub.add_parser("bench", help="measure a broker: produce, consume, latency, group join (librdkafka)",
                       description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--broker", choices=["pstream", "tansu"], default="pstream",
                       help="start this broker on 127.0.0.1 for each repetition (default pstream)")
    where.add_argument("--bootstrap", metavar="127.0.0.1:PORT", help="measure a running broker instead")
    where.add_argument("--compare", metavar="PEER", choices=["tansu"], help="pstream and PEER, alternating")
    p.add_argument("--pid", type=int, help="with --bootstrap: the broker's pid, for CPU and RSS")
    p.add_argument("--repeat", type=int, default=3, help="repetitions (default 3); the medians are reported")
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help=f"comma-separated subset of {WORKLOADS} (default: all but transactions)")
    p.add_argument("--txn-records", type=int, default=1000,
                   help="transactions workload: records per transaction (default 1000)")
    p.add_argument("--sizes", default="100,1024", help="message sizes in bytes (default 100,1024)")
    p.add_argument("--partitions", default="1,6", help="partition counts (default 1,6)")
    p.add_argument("--compression", default="none,lz4", help="codecs (default none,lz4)")
    p.add_argument("--mb", type=int, default=256, help="MB per produce phase (default 256)")
    p.add_argument("--max-messages", type=int, default=1_000_000, help="cap per produce phase (default 1M)")
    p.add_argument("--producers", type=int, default=0, help="add a phase with this many producers at once")
    p.add_argument("--rate", type=int, default=5000, help="latency: messages per second (default 5000)")
    p.add_argument("--request-rates", default="1000,5000,20000",
                   help="requests workload: one-record produce requests per second; the lowest also with a "
                        "tailing consumer (default 1000,5000,20000)")
    p.add_argument("--capacity-clients", type=int, default=8,
                   help="capacity workload: closed-loop producers of one-record requests, a partition each (default 8)")
    p.add_argument("--cores", type=int, default=1,
                   help="the pstream broker started here serves on this many cores (pstream serve --cores)")
    p.add_argument("--broker-cpus", metavar="LIST", help="pin the broker started here to these CPUs (e.g. 1 or 0,1)")
    p.add_argument("--client-cpus", metavar="LIST", help="pin the load (this process and its children) to these CPUs")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="latency and requests: seconds per phase")
    p.add_argument("--phase-seconds", type=float, default=120.0, help="time bound of every phase")
    p.add_argument("--output-dir", default="bench-results", help="one JSON document per run here ('' for none)")
    p.set_defaults(func=cmd_bench)


def plan_from(args: argparse.Namespace) -> Plan:
    chosen = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        raise CliError(f"--workloads: unknown {', '.join(sorted(unknown))} (choose from {', '.join(WORKLOADS)})")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        partitions = [int(s) for s in args.partitions.split(",")]
        request_rates = [int(s) for s in args.request_rates.split(",")]
    except ValueError:
        raise CliError("--sizes, --partitions and --request-rates are comma-separated integers") from None
    if min(sizes) < 16 or min(partitions) < 1 or args.repeat < 1:
        raise CliError("sizes are at least 16 bytes, partitions and --repeat at least 1")
    return Plan(sizes=sizes, partitions=partitions, compressions=args.compression.split(","),
                produce_bytes=args.mb * 1_000_000, max_messages=args.max_messages, producers=args.producers,
                rate=args.rate, latency_seconds=args.latency_seconds, phase_seconds=args.phase_seconds,
                workloads=chosen, transaction_records=args.txn_records, request_rates=request_rates,
                capacity_clients=args.capacity_clients)


def cpu_list(text: str | None) -> set[int] | None:
    if not text:
        return None
    try:
        return {int(c) for c in text.split(",")}
    except ValueError:
        raise CliError(f"a CPU list is comma-separated CPU numbers, got {text!r}") from None


def median_rows(side: dict) -> list[list]:
    return [[w, m.get("mb_per_s"), m.get("msgs_per_s"), m.get("p99_ms"), m.get("p99.9_ms"), m.get("seconds"),
             m.get("cpu_seconds"), m.get("cpu_s_per_gb"), m.get("cpu_us_per_request"), m.get("cpu_us_per_fetch_request"),
             None if m.get("peak_rss_bytes") is None else round(m["peak_rss_bytes"] / 2**20)] for w, m in side.items()]


MEDIAN_HEADERS = ["WORKLOAD", "MB/S", "MSG/S", "P99-MS", "P99.9-MS", "SECONDS", "CPU-S", "CPU-S/GB", "CPU-US/REQ", "CPU-US/FETCH",
                  "RSS-MIB"]


def cmd_bench(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    if args.compare:
        from pstream.bench.compare import compare, ratio_rows, targets

        ours, theirs = compare(plan, args.repeat, args.compare, args.output_dir or None)
        print(f"\nmedians of {args.repeat} runs: pstream")
        table(MEDIAN_HEADERS, median_rows(ours))
        print(f"\nmedians of {args.repeat} runs: {args.compare}")
        table(MEDIAN_HEADERS, median_rows(theirs))
        print()
        table(["WORKLOAD", "METRIC", "PSTREAM", args.compare.upper(), "RATIO"], ratio_rows(ours, theirs))
        print()
        rows = targets(ours, theirs)
        table(["TARGET", "PSTREAM", args.compare.upper(), "MET"],
              [[t, a, b, "-" if ok is None else ("yes" if ok else "NO")] for t, a, b, ok in rows])
        return 0
    kind = "external" if args.bootstrap else args.broker
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_list(args.client_cpus))
    if args.cores != 1 and kind != "pstream":
        raise CliError("--cores is for the pstream broker this command starts")
    extra = ["--cores", str(args.cores)] if args.cores != 1 else []
    runs = run_repeated(kind, plan, args.repeat, args.bootstrap, args.pid, args.output_dir or None,
                        extra=extra, broker_cpus=cpu_list(args.broker_cpus))
    print(f"\nmedians of {args.repeat} runs: {kind}")
    table(MEDIAN_HEADERS, median_rows(medians(runs)))
    failed = [r for run in runs for r in run if r.get("verified") is False or r.get("complete") is False]
    return 1 if failed else 0
