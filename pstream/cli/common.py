"""What every networked command shares: --brokers/--debug, and the client they name."""

from __future__ import annotations

import argparse
import os

from pstream.client import KafkaClient, Security

DEFAULT_BROKERS = "127.0.0.1:9092"


def common_options() -> argparse.ArgumentParser:
    """--brokers and --debug, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--brokers", "-X", metavar="HOST:PORT[,...]", default=argparse.SUPPRESS,
                        help=f"where the cluster is (default: PSTREAM_BROKERS or {DEFAULT_BROKERS})")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of an error")
    sec = common.add_argument_group("security (for SSL and SASL listeners)")
    sec.add_argument("--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
                     default=argparse.SUPPRESS, help="the listener's protocol (default: PSTREAM_SECURITY_PROTOCOL "
                                                     "or PLAINTEXT)")
    sec.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
                     default=argparse.SUPPRESS, help="default: PSTREAM_SASL_MECHANISM or SCRAM-SHA-512")
    sec.add_argument("--user", default=argparse.SUPPRESS, help="SASL user (default: PSTREAM_USER)")
    sec.add_argument("--password", default=argparse.SUPPRESS,
                     help="SASL password (default: PSTREAM_PASSWORD; prefer it to this flag, which others can see)")
    sec.add_argument("--ca", default=argparse.SUPPRESS, metavar="PEM",
                     help="CA certificates to trust (default: PSTREAM_CA, else the system's)")
    sec.add_argument("--cert", default=argparse.SUPPRESS, metavar="PEM", help="client certificate (mTLS)")
    sec.add_argument("--key", default=argparse.SUPPRESS, metavar="PEM", help="client certificate's key")
    return common


def brokers(args: argparse.Namespace) -> str:
    return getattr(args, "brokers", None) or os.environ.get("PSTREAM_BROKERS") or DEFAULT_BROKERS


def security(args: argparse.Namespace) -> Security:
    def pick(name: str, env: str, default=None):
        return getattr(args, name, None) or os.environ.get(env) or default

    return Security(protocol=pick("security_protocol", "PSTREAM_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
                    mechanism=pick("sasl_mechanism", "PSTREAM_SASL_MECHANISM", "SCRAM-SHA-512").upper(),
                    user=pick("user", "PSTREAM_USER"), password=pick("password", "PSTREAM_PASSWORD"),
                    cafile=pick("ca", "PSTREAM_CA"), certfile=getattr(args, "cert", None),
                    keyfile=getattr(args, "key", None))


def connect(args: argparse.Namespace) -> KafkaClient:
    return KafkaClient(brokers(args), timeout=getattr(args, "timeout", 30.0), security=security(args))
