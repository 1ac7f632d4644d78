"""`pstream log dump|verify PATH`: read a data directory offline, like kafka-dump-log.

PATH is a data directory, a topic's or a partition's directory, or one .log segment.
Segments are memory-mapped and walked by the core (`_core.scan_segment`), never loaded whole. `dump` lists each segment and its
batches (position, offsets, records, size, codec, timestamps, producer id/epoch/sequence,
flags; --records adds the records). Both check every batch's CRC and framing, that offsets
only go forward, and every batch's records as the broker checked them before storing them
(`_core.check_batch`: record count, lengths and varints, offset deltas, after decompression
for compressed batches). `verify` also checks each segment's `.index` (relative offsets
increasing, each entry at a batch boundary whose last offset it names) and `.timeindex`
(timestamps and offsets never going back, each entry naming a batch's last offset inside
the segment and that batch's max timestamp). It reports the file and position of the first
problem of each file (exit code 1). Zeros after the last batch are preallocated space, not
corruption; a missing index is not a problem (the broker rebuilds it).

Safe on a running broker's directory: it only reads (the tail being written may show
as a short or zero tail).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys

from pstream import _core
from pstream.cli.output import CliError, bold, red
from pstream.errors import CorruptBatchError, CrcMismatchError
from pstream.storage import layout
from pstream.storage.metadata import verify_metadata_files

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
INDEX_ENTRY = struct.Struct(">II")        # relative offset, position
TIME_INDEX_ENTRY = struct.Struct(">qI")   # timestamp, relative offset


def register(sub, common) -> None:
    log = sub.add_parser("log", help="offline tools for a data directory (no broker needed)")
    cmds = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    p = cmds.add_parser("dump", help="list segments and batches (offsets, timestamps, sizes, codec, producer)")
    p.add_argument("path", metavar="PATH", help="data, topic or partition directory, or a .log file")
    p.add_argument("--records", action="store_true", help="print every record too (offset, timestamp, key, value)")
    p.set_defaults(func=cmd_dump)
    p = cmds.add_parser("verify", help="check every batch's CRC and records, and the indexes; "
                                          "report the first corrupt position")
    p.add_argument("path", metavar="PATH", help="data, topic or partition directory, or a .log file")
    p.set_defaults(func=cmd_verify)


def segment_files(path: str) -> list[str]:
    """Every segment under path, in topic, partition and offset order."""
    if os.path.isfile(path):
        if layout.parse_segment_file_name(os.path.basename(path)) is None:
            raise CliError(f"{path} is not a segment (<20-digit base offset>.log)")
        return [path]
    if not os.path.isdir(path):
        raise CliError(f"{path}: no such file or directory")
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith("@")]   # pstream's own files, and deletions underway
        found += [os.path.join(root, f) for f in files if layout.parse_segment_file_name(f) is not None]

    def order(p: str):
        parent = os.path.dirname(p)
        part = os.path.basename(parent)
        return (os.path.dirname(parent), int(part) if part.isdigit() else -1, os.path.basename(p))
    return sorted(found, key=order)


class SegmentScan:
    """Walks one segment's batches; stops at the first problem, recorded in `problem`."""

    def __init__(self, path: str):
        self.path = path
        self.base_offset = layout.parse_segment_file_name(os.path.basename(path))
        self.size = os.path.getsize(path)
        self.problem: tuple[int, str] | None = None
        self.valid_end = 0
        self.batches = self.records = 0
        self.boundaries: dict[int, int] = {}      # batch position -> last offset
        self.max_timestamps: dict[int, int] = {}  # batch last offset -> max timestamp

    def _judge(self, scan, pos: int, header, crc_ok: bool, expected: int) -> str | None:
        """Why the batch at pos is not a good one, or None."""
        if not crc_ok or header.magic != 2 or header.record_count < 0:
            try:   # the core's own words for what is wrong with the header
                _core.validate_batch(scan.batch(pos, header))
            except CorruptBatchError as exc:
                # A CRC mismatch points at the CRC field, not at the changed byte: no position for it.
                detail = "" if isinstance(exc, CrcMismatchError) else f" at byte {pos + exc.position}"
                return f"batch claiming base offset {header.base_offset}: {exc.message}{detail}"
        if header.base_offset < expected:
            return f"batch at offset {header.base_offset} goes back (expected {expected} or later)"
        fault = _core.check_batch(scan.batch(pos, header), check_crc=False)   # the CRC was just checked
        if fault is not None:
            return (f"batch at offset {header.base_offset}: {fault.message} "
                    f"(byte {pos + fault.position} of the segment)")
        return None

    def run(self, on_batch) -> None:
        expected = self.base_offset
        with _core.scan_segment(self.path) as scan:
            for pos, header, crc_ok in scan:
                problem = self._judge(scan, pos, header, crc_ok, expected)
                if problem:
                    self.problem = (pos, problem)
                    return
                self.boundaries[pos] = header.last_offset
                self.max_timestamps[header.last_offset] = header.max_timestamp
                on_batch(scan, pos, header)
                self.batches += 1
                self.records += header.record_count
                expected = header.last_offset + 1
                self.valid_end = pos + header.size
            if scan.stop in (_core.SCAN_PARTIAL, _core.SCAN_CORRUPT):
                self.problem = (scan.end, self._describe_tail(scan.end, scan.stop))

    def _describe_tail(self, pos: int, stop: str) -> str:
        """What sits at pos, where the batches stop short of the end of the file."""
        with open(self.path, "rb") as f:
            f.seek(pos)
            head = f.read(_core.BATCH_HEADER_SIZE)
        if len(head) < _core.BATCH_HEADER_SIZE:
            return f"a partial batch header: {len(head)} bytes left, a batch header needs {_core.BATCH_HEADER_SIZE}"
        header = _core.peek_batch(head)
        where = f"batch claiming base offset {header.base_offset}"
        if stop == _core.SCAN_CORRUPT:
            return f"{where}: batch length {header.batch_length} is smaller than a v2 batch header at byte {pos + 8}"
        return (f"{where}: batch length {header.batch_length} needs {header.size} bytes, the file holds "
                f"{self.size - pos} from here")


def check_offset_index(scan: SegmentScan) -> tuple[str, int, str] | None:
    """(file, position, reason) of the first problem of the segment's .index, or None."""
    path = layout.sibling_file(scan.path, ".index")
    data = _read_if_present(path)
    if len(data) % INDEX_ENTRY.size:
        return path, len(data) - len(data) % INDEX_ENTRY.size, f"{len(data)} bytes is not a whole number of entries"
    previous = -1
    for at in range(0, len(data), INDEX_ENTRY.size):
        relative, position = INDEX_ENTRY.unpack_from(data, at)
        offset = scan.base_offset + relative
        if relative <= previous:
            return path, at, f"relative offset {relative} does not increase (previous {previous})"
        previous = relative
        if position >= scan.valid_end:
            return path, at, f"offset {offset} points at byte {position}, past the last batch (byte {scan.valid_end})"
        last = scan.boundaries.get(position)
        if last is None:
            return path, at, f"offset {offset} points at byte {position}, which is not a batch boundary"
        if last != offset:
            return path, at, f"offset {offset} points at byte {position}, the batch ending at offset {last}"
    return None


def check_time_index(scan: SegmentScan) -> tuple[str, int, str] | None:
    """(file, position, reason) of the first problem of the segment's .timeindex, or None."""
    path = layout.sibling_file(scan.path, ".timeindex")
    data = _read_if_present(path)
    if len(data) % TIME_INDEX_ENTRY.size:
        return path, len(data) - len(data) % TIME_INDEX_ENTRY.size, \
            f"{len(data)} bytes is not a whole number of entries"
    previous_ts = previous_offset = None
    for at in range(0, len(data), TIME_INDEX_ENTRY.size):
        timestamp, relative = TIME_INDEX_ENTRY.unpack_from(data, at)
        offset = scan.base_offset + relative
        if previous_ts is not None and (timestamp < previous_ts or offset < previous_offset):
            return path, at, (f"entry ({timestamp}, offset {offset}) goes back from "
                              f"({previous_ts}, offset {previous_offset})")
        previous_ts, previous_offset = timestamp, offset
        stored = scan.max_timestamps.get(offset)
        if stored is None:
            return path, at, f"offset {offset} is not the last offset of a batch in the segment"
        if stored != timestamp:
            return path, at, f"timestamp {timestamp} for offset {offset}, whose batch has max timestamp {stored}"
    return None


def _read_if_present(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


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

    def on_batch(scan, pos, header):
        out.write(describe_batch(pos, header) + "\n")
        if args.records:
            _, records = _core.decode_batch(scan.batch(pos, header))
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
        scan.run(lambda scan, pos, header: None)
        batches += scan.batches
        records += scan.records
        nbytes += scan.valid_end
        if scan.problem:
            pos, reason = scan.problem
            corrupt.append(path)
            print(red(f"CORRUPT {path} at position {pos}: {reason}") + f" ({scan.batches} good batches before it)")
            continue   # the indexes are judged against good batches only
        for problem in (check_offset_index(scan), check_time_index(scan)):
            if problem:
                index_path, pos, reason = problem
                corrupt.append(index_path)
                print(red(f"CORRUPT {index_path} at position {pos}: {reason}"))
    metadata = [] if os.path.isfile(args.path) else verify_metadata_files(args.path)
    for problem in metadata:
        corrupt.append(problem.path)
        print(red(f"CORRUPT {problem}"))
    summary = (f"{len(files)} segment(s), {batches} batches, {records} records, {nbytes} bytes checked"
               + (", and the metadata files" if not os.path.isfile(args.path) else ""))
    if corrupt:
        print(f"{summary}: {len(corrupt)} corrupt file(s)")
        return 1
    print(f"{summary}: all CRCs match, every record parses, the indexes and metadata files agree")
    return 0
