"""`pstream log truncate PATH --to OFFSET`: the operator's repair of a damaged partition.

Recovery never cuts damage that valid batches follow (they may be acknowledged records): the
partition stays readable up to the damage and refuses writes, and the broker's log names this
command. It runs offline (the broker stopped: it takes the data directory's lock) and drops
every record from OFFSET on. A separate command, not a start-up setting, so the loss is decided
per partition by someone who read the message, never by a flag left in a config file.
"""

from __future__ import annotations

import argparse

from pstream.cli.output import CliError
from pstream.errors import PStreamError


def register(sub, common) -> None:
    """Adds `truncate` to the `log` command (registered before this one by log_tool)."""
    log = sub.choices["log"]
    cmds = next(a for a in log._actions if isinstance(a, argparse._SubParsersAction))
    p = cmds.add_parser("truncate", help="drop every record at or after OFFSET from a damaged partition")
    p.add_argument("path", metavar="PATH", help="the partition's directory (<data>/<topic>/<partition>)")
    p.add_argument("--to", type=int, required=True, metavar="OFFSET",
                   help="the first offset to drop: the log then ends there (the damage's offset, as logged)")
    p.set_defaults(func=cmd_truncate)


def cmd_truncate(args: argparse.Namespace) -> int:
    from pstream.storage.repair import truncate_partition

    try:
        result = truncate_partition(args.path, args.to)
    except PStreamError as exc:
        raise CliError(str(exc)) from None
    print(f"truncated {result.segment} at position {result.position}: the log now ends at offset {result.offset}; "
          f"{result.bytes_dropped} bytes dropped, {len(result.segments_removed)} later segment(s) removed")
    return 0
