"""`pstream ...`: the command line, in the spirit of Redpanda's rpk.

Every command except `serve`, `demo` and `log` talks the Kafka protocol to a running
broker (pstream or any Kafka-compatible one) named by --brokers or PSTREAM_BROKERS.
Exit codes: 0 done, 1 the command failed (one line on stderr; --debug for the traceback),
2 bad usage (argparse's message), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from pstream.cli import acl, bench, cluster, consume, group, log_repair, log_tool, produce, serve, topic, txn, user
from pstream.cli.common import common_options
from pstream.cli.output import CliError
from pstream.client import KafkaError

COMMANDS = (serve, topic, produce, consume, group, txn, user, acl, cluster, log_tool, log_repair, bench)


def _version() -> str:
    import pstream
    return f"{pstream.__version__} (CRC-32C {pstream.crc32c_implementation()}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="pstream", parents=[common],
                                     description="pstream: a Kafka-compatible broker, embeddable log and its tools.")
    parser.add_argument("--version", action="version", version=f"pstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (CliError, KafkaError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"pstream: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:   # `pstream consume ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if getattr(args, "debug", False):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"pstream: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:   # a bug, or a broker answering what no schema allows: still one line
        if getattr(args, "debug", False):
            raise
        print(f"pstream: unexpected {type(exc).__name__}: {exc} (--debug shows where)", file=sys.stderr)
        return 1
