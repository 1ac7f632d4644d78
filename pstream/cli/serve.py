"""`pstream serve` runs the broker; `pstream demo` appends and reads records in an embedded log."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub, common) -> None:
    from pstream.broker.config import add_arguments

    serve = sub.add_parser("serve", help="run the Kafka-compatible broker",
                           description="Run the Kafka-compatible broker (127.0.0.1:9092, data in ./pstream-data).")
    add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="append and read records in an embedded log")
    demo.add_argument("--data-dir", default="./pstream-data")
    demo.add_argument("--count", type=int, default=200_000)
    demo.add_argument("--size", type=int, default=100)
    demo.add_argument("--flush", choices=["always", "interval", "bytes"], default="interval")
    demo.set_defaults(func=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from pstream.broker.broker import run
    from pstream.broker.config import load_config
    from pstream.errors import ConfigError

    from pstream.errors import ClusterUnavailableError, DirectoryInUseError

    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"pstream serve: {exc}", file=sys.stderr)
        return 2
    try:
        return run(config)
    except (DirectoryInUseError, ClusterUnavailableError, ConfigError) as exc:   # a refusal, not a crash
        print(f"pstream serve: {exc.message}", file=sys.stderr)
        return 1


def cmd_demo(args: argparse.Namespace) -> int:
    import pstream

    with pstream.Log(args.data_dir, flush=args.flush, flush_ms=10) as log:
        part = log.topic("demo", partitions=1).partition(0)
        start = part.log_end_offset
        value = b"x" * args.size
        t0 = time.perf_counter()
        for _ in range(args.count):
            part.append(value)
        part.flush()
        elapsed = time.perf_counter() - t0
        read = sum(1 for _ in part.read(start))
        print(f"pstream {pstream.__version__}: CRC-32C kernel {pstream.crc32c_implementation()}, "
              f"O_DIRECT {'on' if part.direct_io else 'off (filesystem refused it)'}")
        print(f"appended {args.count} records of {args.size} B in {elapsed:.3f} s "
              f"({args.count / elapsed:,.0f} records/s, flush={args.flush}); read back {read}")
        print(f"log {args.data_dir}/demo/0: offsets {part.log_start_offset}..{part.log_end_offset - 1}")
    return 0
