"""The small metadata files of a data directory: reading them strictly, and checking them offline.

Files (each replaced atomically by `layout.write_json_atomic` or the partition's checkpoint
writer: temp file, fsync, rename, fsync of the directory):

    <data>/@node/broker.json                      {"cluster_id": C, "node_id": N}
    <data>/@node/producer_ids.json                {"reserved_up_to": N}
    <data>/<topic>/topic.json                     {"partitions", "config", "topic_id", "overrides"}
    <data>/<topic>/<partition>/log-start-offset   one decimal offset and a newline
    <data>/<topic>/<partition>/<20 digits>.snapshot  idempotent producer state (disposable: rebuilt
                                                  from the log when unreadable)

A corrupt file that cannot be rebuilt stops the start with `CorruptMetadataError`, which names
the file and says what an operator can do; `verify_metadata_files` lists every such problem
without opening the log (for `pstream log verify`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

from pstream.errors import StorageIOError

TOPIC_ADVICE = ("restore it from a backup, or write it again by hand (partitions = the number of numbered "
                "directories next to it, a new topic_id, the topic's settings), or move the topic's directory "
                "out of the data directory to start without the topic")
BROKER_ADVICE = ("restore it from a backup, or delete it to start with a new cluster id "
                 "(clients that stored the old one will notice)")
PRODUCER_IDS_ADVICE = ("restore it from a backup, or write {\"reserved_up_to\": N} with N above every producer id "
                       "ever handed out (for example the current time in milliseconds)")
LOG_START_ADVICE = ("write the partition's log start offset into it (one decimal number), or delete it to "
                    "make the records below the old log start readable again")
SNAPSHOT_ADVICE = "nothing to do: the broker rebuilds the producer state from the log"
ADVICE = {"topic.json": TOPIC_ADVICE, "broker.json": BROKER_ADVICE, "producer_ids.json": PRODUCER_IDS_ADVICE,
          "log-start-offset": LOG_START_ADVICE}


def advice_for(path: str) -> str:
    name = os.path.basename(path)
    if name.endswith(".snapshot"):
        return SNAPSHOT_ADVICE
    return ADVICE.get(name, "restore it from a backup")


class CorruptMetadataError(StorageIOError):
    """A metadata file cannot be read: the message names it and says what an operator can do."""

    def __init__(self, path: str, reason: str, advice: str):
        super().__init__(f"corrupt metadata file {path}: {reason}; to start, {advice}", file=path)
        self.reason = reason
        self.advice = advice


@dataclass(frozen=True)
class MetadataProblem:
    path: str
    reason: str
    advice: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} ({self.advice})"


def read_json_strict(path: str, advice: str) -> dict:
    """The JSON object in path; CorruptMetadataError when it is not one (FileNotFoundError passes)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptMetadataError(path, f"not valid JSON ({exc})", advice) from None
    if not isinstance(data, dict):
        raise CorruptMetadataError(path, f"not a JSON object (a {type(data).__name__})", advice)
    return data


def _check_topic_meta(path: str) -> dict:
    from pstream.errors import ConfigError
    from pstream.storage.config import TopicConfig

    meta = read_json_strict(path, TOPIC_ADVICE)
    partitions = meta.get("partitions")
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise CorruptMetadataError(path, f"partitions must be a positive integer, got {partitions!r}", TOPIC_ADVICE)
    try:
        uuid.UUID(str(meta.get("topic_id")))
    except ValueError:
        raise CorruptMetadataError(path, f"topic_id is not a UUID: {meta.get('topic_id')!r}", TOPIC_ADVICE) from None
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CorruptMetadataError(path, "config is missing or not an object", TOPIC_ADVICE)
    try:
        TopicConfig.from_kwargs(**config)
    except (ConfigError, TypeError) as exc:
        raise CorruptMetadataError(path, f"invalid config: {exc}", TOPIC_ADVICE) from None
    if not isinstance(meta.get("overrides", {}), dict):
        raise CorruptMetadataError(path, "overrides is not an object", TOPIC_ADVICE)
    return meta


def read_topic_meta(path: str) -> dict:
    """A topic.json, checked: CorruptMetadataError naming the file when it is damaged."""
    return _check_topic_meta(path)


def _check_broker_meta(path: str) -> None:
    meta = read_json_strict(path, BROKER_ADVICE)
    if not isinstance(meta.get("cluster_id"), str) or not meta["cluster_id"]:
        raise CorruptMetadataError(path, "cluster_id is missing", BROKER_ADVICE)
    if isinstance(meta.get("node_id"), bool) or not isinstance(meta.get("node_id"), int):
        raise CorruptMetadataError(path, "node_id is missing or not an integer", BROKER_ADVICE)


def _check_producer_ids(path: str) -> None:
    reserved = read_json_strict(path, PRODUCER_IDS_ADVICE).get("reserved_up_to")
    if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 1:
        raise CorruptMetadataError(path, f"reserved_up_to must be a positive integer, got {reserved!r}",
                                   PRODUCER_IDS_ADVICE)


def _check_log_start(path: str) -> None:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii").strip()
        if text:
            int(text)
    except (UnicodeDecodeError, ValueError):
        raise CorruptMetadataError(path, "not a decimal offset", LOG_START_ADVICE) from None


def _check_snapshot(path: str) -> None:
    read_json_strict(path, SNAPSHOT_ADVICE)


def verify_metadata_files(data_dir: str) -> list[MetadataProblem]:
    """Every damaged metadata file under a data directory (a topic's or partition's directory
    works too), with what to do about it; [] when all are readable. Leftover `.tmp` files of an
    interrupted write are not problems (the write never took effect)."""
    from pstream.storage import layout

    problems = []
    checks = {"broker.json": _check_broker_meta, "producer_ids.json": _check_producer_ids,
              layout.TOPIC_META: _check_topic_meta, "log-start-offset": _check_log_start}
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(layout.DELETING_PREFIX))
        for name in sorted(files):
            check = checks.get(name)
            if check is None and name.endswith(".snapshot"):
                check = _check_snapshot
            if check is None:
                continue
            path = os.path.join(root, name)
            try:
                check(path)
            except CorruptMetadataError as exc:
                problems.append(MetadataProblem(path, exc.reason, exc.advice))
            except OSError as exc:
                problems.append(MetadataProblem(path, f"cannot read: {exc.strerror or exc}", "check the disk"))
    return problems
