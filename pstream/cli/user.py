"""`pstream user create|delete|list`: the SCRAM users SASL clients log in as (rpk's `rpk security
user`), through Kafka's AlterUserScramCredentials and DescribeUserScramCredentials. The password
is salted and hashed here; the broker never sees it."""

from __future__ import annotations

import argparse
import getpass
import os

from pstream.cli.common import connect
from pstream.cli.output import CliError, add_format, emit, table
from pstream.security.scram import MECHANISMS, MIN_ITERATIONS


def register(sub, common) -> None:
    user = sub.add_parser("user", parents=[common], help="create, delete and list SCRAM users")
    cmds = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("create", parents=[common], help="create a user, or set its password")
    p.add_argument("name", metavar="USER")
    p.add_argument("--new-password", metavar="PASSWORD",
                   help="its password (default: PSTREAM_NEW_PASSWORD, else asked for)")
    p.add_argument("--mechanism", action="append", choices=tuple(MECHANISMS),
                   help="SCRAM mechanism to create it for (repeatable; default: both)")
    p.add_argument("--iterations", type=int, default=MIN_ITERATIONS, help=f"default {MIN_ITERATIONS}")
    p.set_defaults(func=cmd_create)

    p = cmds.add_parser("delete", parents=[common], help="delete a user's credentials")
    p.add_argument("name", metavar="USER")
    p.add_argument("--mechanism", action="append", choices=tuple(MECHANISMS),
                   help="only this mechanism's credential (repeatable; default: all the user has)")
    p.set_defaults(func=cmd_delete)

    p = cmds.add_parser("list", parents=[common], help="users and their mechanisms")
    p.set_defaults(func=cmd_list)
    add_format(p)


def cmd_create(args: argparse.Namespace) -> int:
    password = args.new_password or os.environ.get("PSTREAM_NEW_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
    if not password:
        raise CliError("the password must not be empty")
    with connect(args) as client:
        for mechanism in args.mechanism or MECHANISMS:
            client.alter_scram_user(args.name, mechanism, password, args.iterations)
    print(f"user {args.name} set for {', '.join(args.mechanism or MECHANISMS)}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        mechanisms = args.mechanism or list(client.scram_users().get(args.name, {}))
        if not mechanisms:
            raise CliError(f"there is no user {args.name!r}")
        for mechanism in mechanisms:
            client.alter_scram_user(args.name, mechanism, None)
    print(f"deleted {', '.join(mechanisms)} credentials of {args.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        users = client.scram_users()
    rows = [{"user": u, "mechanisms": {m: i for m, i in sorted(mechs.items())}} for u, mechs in sorted(users.items())]
    emit(args, rows, lambda: table(["USER", "MECHANISMS"], [
        [r["user"], ", ".join(f"{m} ({i} iterations)" for m, i in r["mechanisms"].items())] for r in rows]))
    return 0
