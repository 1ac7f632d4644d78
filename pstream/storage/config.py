"""Topic settings: names (Kafka's topic configs in snake_case), defaults, validation.

`TopicConfig.from_kwargs` is the one place that accepts settings from users: an
unknown or invalid setting raises ConfigError naming it. Kafka's dotted names
(`retention.ms`) are accepted too, so configs can come straight from Kafka tools.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from pstream.errors import ConfigError
from pstream.record.compression import GZIP, LZ4, ZSTD, codec_id
from pstream.storage.kafka_configs import LONG_MAX, TOPIC_CONFIG_DEFS, check_value

FLUSH_POLICIES = ("always", "interval", "bytes")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
# Kafka spells the combined policy either way round; it is stored as "compact,delete".
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")


@dataclass(frozen=True)
class TopicConfig:
    """Per-topic settings; None means unlimited / disabled where Kafka uses -1."""

    segment_bytes: int = 1 << 30
    segment_ms: int | None = 7 * 24 * 3600 * 1000
    retention_bytes: int | None = None
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"
    # CreateTime records further than this before / after the broker's clock are refused
    # (INVALID_TIMESTAMP); Kafka 3.9's defaults, Long.MAX_VALUE, mean no limit.
    message_timestamp_before_max_ms: int = (1 << 63) - 1
    message_timestamp_after_max_ms: int = (1 << 63) - 1
    cleanup_policy: str = "delete"
    # compaction (cleanup_policy "compact" or "compact,delete"), Kafka 3.9's defaults
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = (1 << 63) - 1
    delete_retention_ms: int = 24 * 3600 * 1000
    flush: str = "always"
    flush_ms: int = 10
    flush_bytes: int = 1 << 20
    write_buffer_bytes: int = 1 << 20   # cap of a partition's write buffer: it grows to this with the write rate,
                                        # from its shard's write pool (Log(write_pool_bytes=...))
    preallocate_bytes: int = 32 << 20
    # Kafka's other topic configs, by their Kafka name, as described (kafka_configs.check_value):
    # accepted, validated and described as Kafka does. Those with a meaning on one node act
    # through the properties below: compression.type (and its levels) recompresses what the
    # broker stores, flush.messages=1 / flush.ms choose the flush policy, min.insync.replicas
    # refuses acks=all produces past the one replica.
    kafka_configs: dict = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @staticmethod
    def normalize(settings: dict) -> dict:
        """Settings keyed by field name (Kafka's dotted names accepted)."""
        return {name.replace(".", "_"): value for name, value in settings.items()}

    @classmethod
    def from_kwargs(cls, base: "TopicConfig | None" = None, **settings) -> "TopicConfig":
        values = asdict(base) if base is not None else {}
        known = set(cls.names())
        kafka = dict(values.get("kafka_configs", {}))
        for raw_name, value in settings.items():
            name = raw_name.replace(".", "_")
            if name == "kafka_configs":
                kafka.update((key, check_kafka_config(key, v)) for key, v in value.items())
            elif name in known:
                values[name] = value
            elif name.replace("_", ".") in TOPIC_CONFIG_DEFS:
                kafka[name.replace("_", ".")] = check_kafka_config(name.replace("_", "."), value)
            else:
                raise ConfigError(f"unknown topic setting {raw_name!r}; known: {', '.join(sorted(known))} and "
                                  f"Kafka's topic configs")
        values["kafka_configs"] = kafka
        config = cls(**values)
        config.validate()
        return config

    def __post_init__(self) -> None:
        if isinstance(self.cleanup_policy, str) and self.cleanup_policy.replace(" ", "") == "delete,compact":
            object.__setattr__(self, "cleanup_policy", "compact,delete")

    @property
    def compacted(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def deletes(self) -> bool:
        """Retention removes old segments (cleanup_policy "delete" or "compact,delete")."""
        return "delete" in self.cleanup_policy

    def validate(self) -> None:
        def need_int(name, minimum, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                limit = f"an integer >= {minimum}" + (" or None" if allow_none else "")
                raise ConfigError(f"setting {name} must be {limit}, got {value!r}")

        need_int("segment_bytes", 14)
        need_int("segment_ms", 1, allow_none=True)
        need_int("retention_bytes", 0, allow_none=True)
        need_int("retention_ms", 0, allow_none=True)
        need_int("index_interval_bytes", 0)
        need_int("max_message_bytes", 0)
        need_int("message_timestamp_before_max_ms", 0)
        need_int("message_timestamp_after_max_ms", 0)
        need_int("min_compaction_lag_ms", 0)
        need_int("max_compaction_lag_ms", 1)
        need_int("delete_retention_ms", 0)
        ratio = self.min_cleanable_dirty_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"setting min_cleanable_dirty_ratio must be a number in [0, 1], got {ratio!r}")
        need_int("flush_ms", 0)
        need_int("flush_bytes", 1)
        need_int("write_buffer_bytes", 8192)
        need_int("preallocate_bytes", 0)
        if self.segment_bytes > (1 << 32) - 1:
            raise ConfigError(f"setting segment_bytes must be below 4 GiB (index positions are 32-bit), "
                              f"got {self.segment_bytes}")
        for name, allowed in (("flush", FLUSH_POLICIES), ("message_timestamp_type", TIMESTAMP_TYPES),
                              ("cleanup_policy", CLEANUP_POLICIES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"setting {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

        if self.kafka_configs.get("remote.storage.enable") == "true":
            raise ConfigError("Tiered Storage functionality is disabled in the broker. Topic cannot be configured "
                              "with remote log storage.")

    @property
    def compression_codec(self) -> int | None:
        """The codec batches are stored in (Kafka's compression.type); None: as producers sent them."""
        name = self.kafka_configs.get("compression.type", "producer")
        return None if name == "producer" else codec_id("none" if name == "uncompressed" else name)

    def compression_level(self, codec: int) -> int | None:
        """The level set for a codec (compression.gzip.level and the like), None for the codec's
        default (gzip's -1 is zlib's default too)."""
        name = {GZIP: "compression.gzip.level", LZ4: "compression.lz4.level", ZSTD: "compression.zstd.level"}.get(codec)
        level = self.kafka_configs.get(name) if name else None
        return None if level is None or level == "-1" else int(level)

    @property
    def min_insync_replicas(self) -> int:
        return int(self.kafka_configs.get("min.insync.replicas", "1"))

    def flush_policy(self) -> tuple[str, int]:
        """(flush, flush_ms) in force: Kafka's flush.messages=1 is "always", a flush.ms below
        Long.MAX_VALUE is "interval" at that period; otherwise pstream's own setting."""
        if self.kafka_configs.get("flush.messages") == "1":
            return "always", self.flush_ms
        flush_ms = int(self.kafka_configs.get("flush.ms", LONG_MAX))
        if flush_ms < LONG_MAX:
            return "interval", flush_ms
        return self.flush, self.flush_ms

    def to_dict(self) -> dict:
        return asdict(self)

    def partition_kwargs(self) -> dict:
        """Keyword arguments for pstream._core.Partition."""
        segment_ms = self.segment_ms
        if self.compacted and self.max_compaction_lag_ms < (1 << 63) - 1:
            # Kafka's LogConfig.maxSegmentMs: the active segment is never cleaned, so it rolls
            # in time for its records to be cleaned within max_compaction_lag_ms.
            segment_ms = min(segment_ms, self.max_compaction_lag_ms) if segment_ms is not None \
                else self.max_compaction_lag_ms
        flush, flush_ms = self.flush_policy()
        return dict(
            flush=flush, flush_ms=flush_ms, flush_bytes=self.flush_bytes,
            segment_bytes=self.segment_bytes, segment_ms=segment_ms, cleanup_policy=self.cleanup_policy,
            retention_bytes=self.retention_bytes, retention_ms=self.retention_ms,
            index_interval_bytes=self.index_interval_bytes, write_buffer_bytes=self.write_buffer_bytes,
            preallocate_bytes=self.preallocate_bytes, max_message_bytes=self.max_message_bytes,
            timestamp_type=TIMESTAMP_TYPES.index(self.message_timestamp_type),
        )


def check_kafka_config(name: str, value) -> str:
    """A Kafka topic config pstream keeps in TopicConfig.kafka_configs, checked as Kafka does."""
    d = TOPIC_CONFIG_DEFS.get(name)
    if d is None or name.replace(".", "_") in {f.name for f in fields(TopicConfig)} - {"flush_ms"}:
        raise ConfigError(f"Unknown topic config name: {name}")
    return check_value(d, value)
