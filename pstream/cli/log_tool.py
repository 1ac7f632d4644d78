"""`pstream log dump|verify PATH`: read a data directory offline, like kafka-dump-log.

PATH is a data directory, a topic's or a partition's directory, or one .log segment.
Segments are memory-mapped, never loaded whole. `dump` lists each segment and its
batches (position, offsets, records, size, codec, timestamps, producer id/epoch/sequence,
flags; --records adds the records); `verify` checks every batch's CRC and framing and
that offsets only go forward, and reports the first corrupt position of each segment
(exit code 1). Zeros after the last batch are preallocated space, not corruption.

Safe on a running broker's directory: it only reads (the tail being written may show
as a short or zero tail).
"""

from __future__ import annotations

import argparse
import mmap
import os
import re
import sys

import numpy as np

from pstream import _core
from pstream.cli.output import CliError, bold, red
from pstream.errors import CorruptBatchError, CrcMismatchError

SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
BATCH_LOG_OVERHEAD, BATCH_HEADER = 12, 61


def register(sub, common) -> None:
    log = sub.add_parser("log", help="offline tools for a data directory (no broker needed)")
    cmds = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    p = cmds.add_parser("dump", help="list segments and batches (offsets, timestamps, sizes, codec, producer)")
    p.add_argument("path", metavar="PATH", help="data, topic or partition directory, or a .log file")
    p.add_argument("--records", action="store_true", help="print every record too (offset, timestamp, key, value)")
    p.set_defaults(func=cmd_dump)
    p = cmds.add_parser("verify", help="check every batch's CRC; report the first corrupt position")
    p.add_argument("path", metavar="PATH", help="data, topic or partition directory, or a .log file")
    p.set_defaults(func=cmd_verify)


def segment_files(path: str) -> list[str]:
    """Every segment under path, in topic, partition and offset order."""
    if os.path.isfile(path):
        if not SEGMENT_NAME.match(os.path.basename(path)):
            raise CliError(f"{path} is not a segment (<20-digit base offset>.log)")
        return [path]
    if not os.path.isdir(path):
        raise CliError(f"{path}: no such file or directory")
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith("@")]   # pstream's own files, and deletions underway
        found += [os.path.join(root, f) for f in files if SEGMENT_NAME.match(f)]

    def order(p: str):
        parent = os.path.dirname(p)
        part = os.path.basename(parent)
        return (os.path.dirname(parent), int(part) if part.isdigit() else -1, os.path.basename(p))
    return sorted(found, key=order)


class SegmentScan:
    """Walks one segment's batches; stops at the first problem, recorded in `problem`."""

    def __init__(self, path: str):
        self.path = path
        self.base_offset = int(SEGMENT_NAME.match(os.path.basename(path)).group(1))
        self.size = os.path.getsize(path)
        self.problem: tuple[int, str] | None = None
        self.valid_end = 0
        self.batches = self.records = 0

    def batches_in(self, view):
        pos, n = 0, len(view)
        expected = self.base_offset
        while pos < n:
            no_batch_here = pos + BATCH_LOG_OVERHEAD > n or int.from_bytes(view[pos + 8:pos + 12], "big") == 0
            if no_batch_here and not np.frombuffer(view, dtype=np.uint8, offset=pos).any():
                break   # preallocated, never written
            try:
                header = _core.validate_batch(view[pos:])
            except CorruptBatchError as exc:
                where = f"batch claiming base offset {int.from_bytes(view[pos:pos + 8], 'big', signed=True)}" \
                    if pos + 8 <= n else "a partial batch header"
                # A CRC mismatch points at the CRC field, not at the changed byte: no position for it.
                detail = f" at byte {pos + exc.position}" if exc.position and not isinstance(exc, CrcMismatchError) else ""
                self.problem = (pos, f"{where}: {exc.message}{detail}")
                break
            if header.base_offset < expected:
                self.problem = (pos, f"batch at offset {header.base_offset} goes back (expected {expected} or later)")
                break
            yield pos, header
            self.batches += 1
            self.records += header.record_count
            expected = header.last_offset + 1
            pos += header.size
            self.valid_end = pos

    def run(self, on_batch) -> None:
        if self.size == 0:
            return
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                for pos, header in self.batches_in(view):
                    on_batch(view, pos, header)
            finally:
                view.release()


def describe_batch(pos: int, h) -> str:
    flags = [name for name, on in (("transactional", h.is_transactional), ("control", h.is_control)) if on]
    ts_type = "log-append" if h.timestamp_type else "create"
    return (f"  position {pos}: offsets {h.base_offset}..{h.last_offset}  records {h.record_count}  size {h.size}"
            f"  codec {CODECS.get(h.compression, h.compression)}  timestamps {h.base_timestamp}..{h.max_timestamp}"
            f" ({ts_type})  producer {h.producer_id} epoch {h.producer_epoch} sequence {h.base_sequence}"
            f"  crc {h.crc:#010x}" + (f"  {' '.join(flags)}" if flags else ""))


def _show(data, limit: int = 80) -> str:
    if data is None:
        return "null"
    text = bytes(data[:limit]).decode("utf-8", "backslashreplace")
    return repr(text) + ("..." if len(data) > limit else "")


def cmd_dump(args: argparse.Namespace) -> int:
    out = sys.stdout
    files = segment_files(args.path)
    corrupt = 0

    def on_batch(view, pos, header):
        out.write(describe_batch(pos, header) + "\n")
        if args.records:
            _, records = _core.decode_batch(view[pos:pos + header.size])
            for r in records:
                headers = " ".join(f"{k}={_show(v)}" for k, v in r.headers)
                out.write(f"    offset {r.offset} timestamp {r.timestamp_ms} key {_show(r.key)} "
                          f"value {_show(r.value)}" + (f" headers {headers}" if headers else "") + "\n")

    for path in files:
        scan = SegmentScan(path)
        out.write(bold(f"segment {path}") + f"  base offset {scan.base_offset}  {scan.size} bytes\n")
        scan.run(on_batch)
        if scan.problem:
            corrupt += 1
            out.write(red(f"  position {scan.problem[0]}: CORRUPT: {scan.problem[1]}") + "\n")
        elif scan.valid_end < scan.size:
            out.write(f"  {scan.size - scan.valid_end} bytes of unused preallocated space\n")
    out.write(f"{len(files)} segment(s)" + (f", {corrupt} corrupt" if corrupt else "") + "\n")
    return 1 if corrupt else 0


def cmd_verify(args: argparse.Namespace) -> int:
    files = segment_files(args.path)
    batches = records = nbytes = 0
    corrupt = []
    for path in files:
        scan = SegmentScan(path)
        scan.run(lambda view, pos, header: None)
        batches += scan.batches
        records += scan.records
        nbytes += scan.valid_end
        if scan.problem:
            pos, reason = scan.problem
            corrupt.append(path)
            print(red(f"CORRUPT {path} at position {pos}: {reason}") + f" ({scan.batches} good batches before it)")
    summary = f"{len(files)} segment(s), {batches} batches, {records} records, {nbytes} bytes checked"
    if corrupt:
        print(f"{summary}: {len(corrupt)} corrupt segment(s)")
        return 1
    print(f"{summary}: all CRCs match")
    return 0
