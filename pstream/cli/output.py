"""How commands print: aligned tables, colour only on a terminal, errors as one line.

Commands raise CliError (or KafkaError from the client) with a message a person can act
on; main turns it into `pstream: <message>` on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys


class CliError(Exception):
    """A command failed for a reason the user can fix: printed as one line, exit code 1."""


def colour_enabled(stream=None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if colour_enabled() else text


def red(text: str) -> str:
    return f"\033[31m{text}\033[0m" if colour_enabled() else text


def table(headers: list[str], rows: list[list[object]], out=None) -> None:
    """Prints rows under headers, columns aligned (numbers right, text left)."""
    out = out or sys.stdout
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]
    print(bold("  ".join(h.ljust(w) if not n else h.rjust(w)
                         for h, w, n in zip(headers, widths, numeric)).rstrip()), file=out)
    for r in cells:
        print("  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(r, widths, numeric)).rstrip(), file=out)


def add_format(parser) -> None:
    """--format for a command that lists or describes: aligned text, or one JSON document."""
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (aligned tables, the default) or json (one document, for scripts)")


def records(headers: list[str], rows: list[list[object]]) -> list[dict]:
    """Table rows as JSON objects keyed by the headers in snake case (LOG-START: log_start)."""
    keys = [h.lower().replace("-", "_") for h in headers]
    return [dict(zip(keys, row)) for row in rows]


def emit(args, document, text) -> None:
    """With --format json prints `document`, else runs text() (its tables and lines)."""
    if getattr(args, "format", "text") == "json":
        print(json.dumps(document, indent=2, default=str))
    else:
        text()


def _is_number(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).isdigit() or text == "-"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def key_values(pairs: list[str], what: str) -> dict[str, str]:
    """['k=v', ...] -> {k: v}; CliError naming the bad one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {pair!r} is not KEY=VALUE")
        out[key] = value
    return out
