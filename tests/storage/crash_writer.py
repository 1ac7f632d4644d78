"""The process test_crash.py kills: appends to a Log with flush="always" until SIGKILL.

    python crash_writer.py DATA_DIR FIRST_SEQ SEED

Prints `ready` once the log is open, then one line per acknowledged append (after
append/append_many returned, i.e. after the fdatasync that covers it), flushed at once:

    ack <partition> <first offset> <first seq> <count>

Record `seq` has key b"k<seq>" and the value `value_for(seq)`, so a reader can check
every record it finds against its own sequence number.
"""

from __future__ import annotations

import random
import sys

TOPIC = "crash"
PARTITIONS = 2
SETTINGS = dict(shards=2, flush="always", segment_bytes=32 << 10, preallocate_bytes=256 << 10,
                write_buffer_bytes=16 << 10, index_interval_bytes=512, retention_ms=None)


def key_for(seq: int) -> bytes:
    return b"k%d" % seq


def value_for(seq: int) -> bytes:
    """b"<seq>;" then filler derived from seq (0..2999 bytes, so batches cross pages)."""
    filler = (b"%d," % (seq * 7919 % 100_003)) * 400
    return b"%d;" % seq + filler[: seq * 7919 % 3000]


def seq_of(value: bytes) -> int:
    return int(value.split(b";", 1)[0])


def main(data_dir: str, first_seq: int, seed: int) -> None:
    import pstream

    rng = random.Random(seed)
    with pstream.Log(data_dir, **SETTINGS) as log:
        parts = list(log.topic(TOPIC, partitions=PARTITIONS))
        print("ready", flush=True)
        seq = first_seq
        while True:
            number = rng.randrange(PARTITIONS)
            part = parts[number]
            choice = rng.random()
            if choice < 0.03:
                part.roll()
                continue
            if choice < 0.6:
                offset, count = part.append(value_for(seq), key=key_for(seq)), 1
            else:
                count = rng.randrange(2, 16)
                offset = part.append_many([(key_for(s), value_for(s)) for s in range(seq, seq + count)])
            print(f"ack {number} {offset} {seq} {count}", flush=True)
            seq += count


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
