"""What every networked command shares: --brokers/--debug, and the client they name."""

from __future__ import annotations

import argparse
import os

from pstream.client import KafkaClient

DEFAULT_BROKERS = "127.0.0.1:9092"


def common_options() -> argparse.ArgumentParser:
    """--brokers and --debug, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--brokers", "-X", metavar="HOST:PORT[,...]", default=argparse.SUPPRESS,
                        help=f"where the cluster is (default: PSTREAM_BROKERS or {DEFAULT_BROKERS})")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of an error")
    return common


def brokers(args: argparse.Namespace) -> str:
    return getattr(args, "brokers", None) or os.environ.get("PSTREAM_BROKERS") or DEFAULT_BROKERS


def connect(args: argparse.Namespace) -> KafkaClient:
    return KafkaClient(brokers(args), timeout=getattr(args, "timeout", 30.0))
