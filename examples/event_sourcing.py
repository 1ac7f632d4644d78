"""An event-sourced bank ledger on the embedded log: no server.

Commands become events appended to the topic `accounts` (keyed by account, so each account's
events stay in order on one partition); the balances are a projection rebuilt by a named
consumer that resumes from its committed position after a restart; a compacted topic
`balances` keeps each account's latest balance as a snapshot.

    python examples/event_sourcing.py [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile

import pstream


def deposit(log: pstream.Log, account: str, amount: int) -> None:
    event = {"type": "deposited", "account": account, "amount": amount}
    log.topic("accounts").append(json.dumps(event).encode(), key=account.encode())


def withdraw(log: pstream.Log, account: str, amount: int, balances: dict[str, int]) -> bool:
    if balances.get(account, 0) < amount:
        return False    # a command refused: no event
    event = {"type": "withdrawn", "account": account, "amount": amount}
    log.topic("accounts").append(json.dumps(event).encode(), key=account.encode())
    return True


def project(log: pstream.Log, balances: dict[str, int]) -> int:
    """Applies the events not yet applied to `balances`, snapshots them, commits; returns how many."""
    applied = 0
    with log.consumer("balance-projection", ["accounts"]) as consumer:
        while events := consumer.poll(max_records=1000, timeout=0.0):
            for rec in events:
                event = json.loads(rec.value)
                sign = 1 if event["type"] == "deposited" else -1
                balances[event["account"]] = balances.get(event["account"], 0) + sign * event["amount"]
                applied += 1
            snapshot = log.topic("balances", cleanup_policy="compact")
            snapshot.append_many([(a.encode(), str(b).encode()) for a, b in balances.items()])
            consumer.commit()   # durable: a restart applies nothing twice
    return applied


def main(data_dir: str) -> dict[str, int]:
    with pstream.Log(data_dir) as log:
        log.topic("accounts", partitions=4)
        balances = {k.decode(): int(v) for k, v in log.topic("balances", cleanup_policy="compact").latest().items()}
        project(log, balances)                        # catch up after a restart
        deposit(log, "ada", 100)
        deposit(log, "bob", 20)
        project(log, balances)
        refused = not withdraw(log, "bob", 50, balances)
        withdraw(log, "ada", 30, balances)
        applied = project(log, balances)
        print(f"balances {balances}; bob's overdraft refused: {refused}; events applied last: {applied}")
        return balances


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ledger-"))
