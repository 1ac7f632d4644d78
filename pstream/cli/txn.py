"""`pstream txn list|describe`: transactional ids, their state, producer and partitions
(Kafka's `kafka-transactions.sh list|describe`)."""

from __future__ import annotations

import argparse
import time

from pstream.cli.common import connect
from pstream.cli.output import add_format, bold, emit, records, table


def register(sub, common) -> None:
    txn = sub.add_parser("txn", parents=[common], help="list and describe transactions")
    cmds = txn.add_subparsers(dest="txn_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("list", parents=[common], help="transactional ids, their producer and state")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="only ids in this state (Ongoing, PrepareCommit, CompleteAbort, ...; repeatable)")
    p.set_defaults(func=cmd_list)
    add_format(p)

    p = cmds.add_parser("describe", parents=[common],
                        help="state, producer id and epoch, timeout, start and partitions of transactional ids")
    p.add_argument("ids", nargs="+", metavar="TRANSACTIONAL-ID")
    p.set_defaults(func=cmd_describe)
    add_format(p)


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = client.list_transactions(args.state or ())
    headers = ["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"]
    emit(args, records(headers, [list(row) for row in found]), lambda: table(headers, [list(row) for row in found]))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    with connect(args) as client:
        described = [client.describe_transaction(txn_id) for txn_id in args.ids]
    now_ms = int(time.time() * 1000)

    def text():
        for i, t in enumerate(described):
            if i:
                print()
            running = f"  running {now_ms - t.start_ms} ms" if t.state == "Ongoing" and t.start_ms >= 0 else ""
            print(bold(f"transaction {t.transactional_id}") + f"  state {t.state}  producer {t.producer_id} "
                  f"epoch {t.producer_epoch}  timeout {t.timeout_ms} ms{running}")
            if t.partitions:
                print()
                table(["TOPIC", "PARTITION"], [[topic, p] for topic, p in t.partitions])
    emit(args, [{"transactional_id": t.transactional_id, "state": t.state, "producer_id": t.producer_id,
                 "producer_epoch": t.producer_epoch, "timeout_ms": t.timeout_ms, "start_ms": t.start_ms,
                 "partitions": [{"topic": topic, "partition": p} for topic, p in t.partitions]}
                for t in described], text)
    return 0
