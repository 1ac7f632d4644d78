"""Where things live in a data directory, and which names are legal.

    <data>/<topic>/topic.json                     partitions, settings, topic id
    <data>/<topic>/<partition>/<20-digit base>.log|.index|.timeindex
    <data>/<topic>/<partition>/log-start-offset   checkpoint moved by delete_records
    <data>/@lock                                  the Log's directory lock (flock)
    <data>/@node/                                 the broker's own files (identity, producer ids)
    <data>/@deleting-<hex>/                       a deleted topic being removed

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
MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")


def check_topic_name(name: str) -> None:
    """Kafka's rules: 1-249 of [a-zA-Z0-9._-], not '.' or '..'."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError(f"topic name must be a non-empty string, got {name!r}")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}", topic=name)
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(f"topic name is {len(name)} characters, the limit is {MAX_TOPIC_NAME}", topic=name)
    if not _LEGAL.match(name):
        raise InvalidTopicError("topic name may only contain ASCII letters, digits, '.', '_' and '-'", topic=name)


def segment_file_name(base_offset: int, suffix: str = ".log") -> str:
    return f"{base_offset:020d}{suffix}"


def topic_dir(data_dir: str, topic: str) -> str:
    return os.path.join(data_dir, topic)


def partition_dir(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, topic, str(partition))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def list_topics(data_dir: str) -> list[str]:
    if not os.path.isdir(data_dir):
        return []
    return sorted(name for name in os.listdir(data_dir)
                  if "@" not in name and os.path.isfile(os.path.join(data_dir, name, TOPIC_META)))


def deleting_dirs(data_dir: str) -> list[str]:
    """Topics whose deletion was interrupted: finish removing them."""
    if not os.path.isdir(data_dir):
        return []
    return [os.path.join(data_dir, n) for n in os.listdir(data_dir) if n.startswith(DELETING_PREFIX)]
