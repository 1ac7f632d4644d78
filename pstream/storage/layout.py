"""Where things live in a data directory, and which names are legal.

    <data>/<topic>/topic.json                     partitions, settings, topic id
    <data>/<topic>/<partition>/<20-digit base>.log|.index|.timeindex
    <data>/<topic>/<partition>/log-start-offset   checkpoint moved by delete_records
    <data>/@lock                                  the Log's directory lock (flock)
    <data>/@node/                                 the broker's own files (identity, producer ids)
    <data>/@deleting-<hex>/                       a deleted topic being removed
    <data>/@creating-<hex>/                       a topic being created (renamed to its name when whole)

Every name that is not a topic contains '@', which no legal topic name can: a client can
never create a topic that collides with pstream's own files.

Metadata files are replaced atomically (write, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import json
import os
import re

from pstream.errors import InvalidTopicError

TOPIC_META = "topic.json"
LOCK_FILE = "@lock"
NODE_DIR = "@node"
DELETING_PREFIX = "@deleting-"
CREATING_PREFIX = "@creating-"
MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def check_topic_name(name: str) -> None:
    """Kafka's rules (org.apache.kafka.common.internals.Topic.validate), with its messages: 1-249 of
    [a-zA-Z0-9._-], not '.' or '..'. The one check every path that creates or names a topic uses."""
    if not isinstance(name, str):
        raise InvalidTopicError(f"Topic name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidTopicError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopicError('Topic name cannot be "." or ".."', topic=name)
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME} characters, "
                                f"topic name: {name}", topic=name)
    if not _LEGAL.fullmatch(name):   # fullmatch: '$' would let a trailing newline through
        raise InvalidTopicError(f'Topic name "{name}" is illegal, it contains a character other than ASCII '
                                f"alphanumerics, '.', '_' and '-'", topic=name)


SEGMENT_SUFFIX = ".log"
INDEX_SUFFIXES = (".index", ".timeindex")
_OFFSET_DIGITS = 20   # Kafka's LogFileUtils: the base offset, zero-padded to 20 digits


def segment_file_name(base_offset: int, suffix: str = SEGMENT_SUFFIX) -> str:
    """`<20-digit base offset><suffix>`, the one place such a name is written (Kafka's
    LogFileUtils.filenamePrefixFromOffset): .log, .index, .timeindex, producer snapshots."""
    return f"{base_offset:0{_OFFSET_DIGITS}d}{suffix}"


def parse_segment_file_name(name: str, suffix: str = SEGMENT_SUFFIX) -> int | None:
    """The base offset a file name written by segment_file_name holds, or None when the name is
    not one (another suffix, not 20 digits): the one place such a name is read."""
    stem = name[:-len(suffix)] if name.endswith(suffix) else None
    if stem is None or len(stem) != _OFFSET_DIGITS or not stem.isascii() or not stem.isdigit():
        return None
    return int(stem)


def segment_bases(partition_dir: str, suffix: str = SEGMENT_SUFFIX) -> list[int]:
    """Base offsets of the files with that suffix in a partition directory, ascending."""
    return sorted(base for base in map(lambda n: parse_segment_file_name(n, suffix), os.listdir(partition_dir))
                  if base is not None)


def sibling_file(segment_path: str, suffix: str) -> str:
    """The file of the same base offset with another suffix (`.index` of a `.log`, ...)."""
    stem, _ = os.path.splitext(segment_path)
    return stem + suffix


def topic_dir(data_dir: str, topic: str) -> str:
    return os.path.join(data_dir, topic)


def partition_dir(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, topic, str(partition))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: dict) -> None:
    """Replaces path with data as JSON (write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_text_atomic(path: str, text: str) -> None:
    """Replaces path with text: a temp file, fsync'ed, renamed over path, then the directory
    fsync'ed, so a crash leaves the old file or the new one, never a mix (and the rename survives)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


def read_json(path: str) -> dict:
    """A metadata file's JSON object; CorruptMetadataError naming the file (and what to do) when it is
    damaged, so a start stops with that message instead of a traceback."""
    from pstream.storage.metadata import advice_for, read_json_strict

    return read_json_strict(path, advice_for(path))


def list_topics(data_dir: str) -> list[str]:
    if not os.path.isdir(data_dir):
        return []
    return sorted(name for name in os.listdir(data_dir)
                  if "@" not in name and os.path.isfile(os.path.join(data_dir, name, TOPIC_META)))


def deleting_dirs(data_dir: str) -> list[str]:
    """Topics whose deletion or creation was interrupted: remove them (a creation never took effect)."""
    if not os.path.isdir(data_dir):
        return []
    return [os.path.join(data_dir, n) for n in os.listdir(data_dir)
            if n.startswith(DELETING_PREFIX) or n.startswith(CREATING_PREFIX)]
