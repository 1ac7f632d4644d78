"""Broker settings: what they are, where they come from, and the checks on them.

`load_config` reads four sources, each overriding the one before:

1. built-in defaults: the field defaults of `BrokerConfig`;
2. a TOML file, named by `--config FILE` (the `config` argument) or PSTREAM_CONFIG: one flat
   table whose keys are the setting names (`data_dir = "/var/lib/pstream"`,
   `listen = "0.0.0.0:9092"`) or Kafka's broker names where there is one
   (`"num.partitions" = 3`). Unquoted dotted keys (`log.retention.ms = 1000`) parse as nested
   tables in TOML; they are joined back into the dotted name. Values keep their TOML type: a
   string where an integer belongs, or 1 for true, is refused;
3. the environment: PSTREAM_ + the setting name in upper case (PSTREAM_LISTEN,
   PSTREAM_AUTO_CREATE_TOPICS=no). Any other PSTREAM_ variable is refused, except those that
   other parts of pstream read (`_OTHER_ENV`, and PSTREAM_TEST_*);
4. command-line flags, added by `add_arguments`: the setting name in kebab case
   (`--data-dir`). Every flag defaults to None, which means "not given".

Values from the environment and flags are text and are parsed here. For retention_ms,
retention_bytes and segment_ms, -1 in any source means unlimited (None). cleanup_policy is
Kafka's list: "compact,delete" as text, or a TOML array ["compact", "delete"]. Every refusal is a
ConfigError naming the setting and the source it came from. This module only reads settings:
it opens no socket and no data directory.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from pstream.errors import ConfigError
from pstream.storage.config import FLUSH_POLICIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# A wildcard listen host is advertised as loopback; it is never a valid advertise host.
LOOPBACK_OF_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}
ENV_PREFIX = "PSTREAM_"
# PSTREAM_ variables that are not broker settings: read by the build, the CLI, tests and benchmarks.
_OTHER_ENV = frozenset({
    "PSTREAM_CONFIG", "PSTREAM_BROKERS", "PSTREAM_CRC32C_SOFTWARE", "PSTREAM_ANNOTATE",
    "PSTREAM_DEBUG_BUILD", "PSTREAM_BENCH_DIR", "PSTREAM_SHRINK",
    "PSTREAM_FAULTS", "PSTREAM_ENABLE_FAULT_INJECTION",   # tests only: see pstream/_corelib/faults.pxi
})
_OTHER_ENV_PREFIX = "PSTREAM_TEST_"


@dataclass(frozen=True)
class BrokerConfig:
    """The broker's settings. `load_config` builds it and checks every value; constructing it
    directly (tests, embedding) trusts the caller."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 9092
    advertise_host: str | None = None
    advertise_port: int | None = None
    data_dir: str = "./pstream-data"
    shards: int | None = None
    cores: int = 1
    node_id: int = 0
    cluster_id: str | None = None
    cluster: str = ""                     # etcd://HOST:PORT[,...]: cluster mode (pstream/cluster/), "" alone
    cluster_lease_ms: int = 9000          # a broker silent this long leaves the cluster (KRaft's broker.session.timeout.ms)
    replica_lag_time_max_ms: int = 30000  # a follower not caught up for this long leaves the ISR
    offsets_topic_num_partitions: int = 16    # cluster mode: __consumer_offsets partitions (Redpanda's default)
    offsets_topic_replication_factor: int = 3  # cluster mode: its replicas, at most the brokers registered
    transaction_state_log_num_partitions: int = 16      # cluster mode: __transaction_state partitions
    transaction_state_log_replication_factor: int = 3   # cluster mode: its replicas, at most the brokers
    auto_leader_rebalance_enable: bool = True       # cluster mode: preferred replicas take their leaderships back
    leader_imbalance_check_interval_seconds: int = 300
    leader_imbalance_per_broker_percentage: int = 10
    inter_broker_listener_name: str | None = None   # cluster mode: the listener brokers reach each other on (first)
    inter_broker_user: str | None = None            # "NAME:PASSWORD[:MECHANISM]" on it if SASL (else bootstrap_user)
    flush: str = "always"
    flush_ms: int = 10
    flush_bytes: int = 1 << 20
    auto_create_topics: bool = True
    default_partitions: int = 1
    default_replication_factor: int = 1
    message_max_bytes: int = 1048588
    retention_ms: int | None = 604800000
    retention_bytes: int | None = None
    segment_bytes: int = 1 << 30
    segment_ms: int | None = 604800000
    retention_check_ms: int = 300000
    write_pool_bytes: int = 64 << 20      # per shard: the write buffers of its partitions (Redpanda's per-shard budget)
    max_open_files: int = 600             # segment descriptors kept open between appends, whole broker
    index_cache_bytes: int = 64 << 20     # finalized segments' indexes held in memory, whole broker
    connections_max_idle_ms: int = 600000
    socket_request_max_bytes: int = 104857600
    max_connections: int = 10000
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_max_size: int = INT32_MAX
    offsets_retention_minutes: int = 10080
    transaction_max_timeout_ms: int = 900000
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10000
    transactional_id_expiration_ms: int = 604800000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3600000
    log_level: str = "INFO"
    listeners: str | None = None              # "NAME://HOST:PORT,...": several listeners (else one PLAINTEXT on listen)
    advertised_listeners: str | None = None
    listener_security_protocol_map: str = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    ssl_cafile: str | None = None
    ssl_client_auth: str = "none"
    ssl_principal_mapping_rules: str = "DEFAULT"
    sasl_enabled_mechanisms: str = "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    connection_failed_authentication_delay_ms: int = 100
    connections_max_reauth_ms: int = 0        # KIP-368: 0 = an authentication lasts as long as its connection
    sasl_oauthbearer_jwks_file: str | None = None
    sasl_oauthbearer_expected_audience: str | None = None
    sasl_oauthbearer_expected_issuer: str | None = None
    sasl_oauthbearer_sub_claim_name: str = "sub"
    sasl_oauthbearer_clock_skew_seconds: int = 30
    bootstrap_user: str | None = None
    authorization: str = "none"               # "acls": Kafka's StandardAuthorizer rules
    super_users: str = ""                     # "User:admin;User:ops"
    allow_everyone_if_no_acl_found: bool = False
    admin_api_require_auth: bool = False      # Redpanda's: HTTP Basic against the SCRAM users
    admin_api_tls: bool = False               # HTTPS with ssl_certfile/ssl_keyfile
    admin_listen_host: str | None = "127.0.0.1"   # None: no admin API
    admin_listen_port: int | None = 9644
    admin_listen_given: bool = False     # set by a source: a taken port is an error, not a reason to move
    # Free space the data directory's filesystem must keep: below it Produce is refused with
    # KAFKA_STORAGE_ERROR before the disk is full (Redpanda's storage_min_free_bytes). None:
    # min(1 GiB, 5% of the filesystem), so a small test filesystem is not refused from the
    # start; 0: no threshold.
    storage_min_free_bytes: int | None = None
    # Memory bounds against misbehaving clients (issue 11): see pstream.broker.connection.
    queued_max_request_bytes: int = 256 << 20
    connections_max_unsent_bytes: int = 1 << 20
    request_receive_timeout_ms: int = 30000
    # Log compaction: the topic defaults (Kafka's log.cleanup.policy and log.cleaner.* synonyms,
    # Kafka 3.9's defaults) and the cleaner threads (pstream.storage.cleaner).
    cleanup_policy: str = "delete"
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = INT64_MAX
    delete_retention_ms: int = 86400000
    cleaner_enable: bool = True
    cleaner_threads: int = 1
    # The key -> offset map of one cleaning pass, per cleaner thread. Kafka's default is 128 MiB
    # for all threads; pstream plans memory per owner, so it is smaller: a partition whose keys do
    # not fit is cleaned in several passes (about 24 bytes a key: 1.3 M keys a pass).
    cleaner_dedupe_buffer_bytes: int = 32 << 20
    cleaner_backoff_ms: int = 15000

    @property
    def advertised(self) -> tuple[str, int]:
        """(host, port) that clients are told to connect to: the advertise address where given,
        else the listen address, with a wildcard listen host advertised as loopback. With listen
        port 0 the port here is 0: only the server knows the port it bound."""
        host = self.advertise_host
        if host is None:
            host = LOOPBACK_OF_WILDCARD.get(self.listen_host, self.listen_host)
        return host, self.listen_port if self.advertise_port is None else self.advertise_port

    def listener_list(self) -> list:
        """The listeners (pstream.security.listeners.Listener), the first one the default: those of
        `listeners`, else one PLAINTEXT listener on listen, advertised as `advertised`."""
        from pstream.security.listeners import Listener, resolve_listeners

        if self.listeners is None:
            host, port = self.advertised
            return [Listener("PLAINTEXT", "PLAINTEXT", self.listen_host, self.listen_port, host, port or None)]
        return resolve_listeners(self.listeners, self.advertised_listeners, self.listener_security_protocol_map)

    def inter_broker_listener(self):
        """The listener brokers of a cluster reach each other on, or None if the name given is no listener's."""
        listeners = self.listener_list()
        if self.inter_broker_listener_name is None:
            return listeners[0]
        return next((lis for lis in listeners if lis.name == self.inter_broker_listener_name), None)

    def inter_broker_credentials(self) -> tuple[str, str, str] | None:
        """(user, password, mechanism) brokers log in with on a SASL inter-broker listener: those of
        inter_broker_user, else bootstrap_user; the mechanism named, else SCRAM-SHA-512 if offered."""
        spec = self.inter_broker_user or self.bootstrap_user
        if not spec:
            return None
        user, _, rest = spec.partition(":")
        password, _, mechanism = rest.partition(":")
        if not mechanism:
            offered = self.sasl_mechanisms()
            mechanism = next((m for m in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN") if m in offered), "SCRAM-SHA-512")
        return user, password, mechanism

    def sasl_mechanisms(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.sasl_enabled_mechanisms.split(",") if m.strip())

    def topic_defaults(self) -> dict:
        """Keyword arguments for pstream.Log(...): the defaults of topics created without settings."""
        names = ("flush", "flush_ms", "flush_bytes", "segment_bytes", "segment_ms", "retention_ms",
                 "retention_bytes", "cleanup_policy", "min_cleanable_dirty_ratio", "min_compaction_lag_ms",
                 "max_compaction_lag_ms", "delete_retention_ms")
        return {**{name: getattr(self, name) for name in names}, "max_message_bytes": self.message_max_bytes}

    def cleaner_options(self) -> dict:
        """Keyword arguments for pstream.Log(...): the log cleaner's threads and memory."""
        return {"cleaner": self.cleaner_enable, "cleaner_threads": self.cleaner_threads,
                "dedupe_buffer_bytes": self.cleaner_dedupe_buffer_bytes, "cleaner_backoff_ms": self.cleaner_backoff_ms}


# --- kinds of value: each checks a typed value (TOML, Python) and parses text (env, flags) ---
# A kind raises TypeError or ValueError; `_apply` turns either into a ConfigError naming the source.


class _Kind:
    expect = "a string"
    metavar = "TEXT"

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError
        return value

    def parse_text(self, text: str) -> Any:
        return self.check(text)


class _Int(_Kind):
    def __init__(self, low: int, high: int | None = None, *, unlimited: bool = False,
                 metavar: str = "N", expect: str | None = None):
        self.low, self.high, self.unlimited, self.metavar = low, high, unlimited, metavar
        default = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"
        self.expect = expect or default + (" or -1 (unlimited)" if unlimited else "")

    def check(self, value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        if self.unlimited and value == -1:
            return None
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError
        return value

    def parse_text(self, text: str) -> int | None:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError
        return self.check(int(text))


class _Float(_Kind):
    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.expect = f"a number {low}..{high}"
        self.metavar = "X"

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        if not self.low <= value <= self.high:   # NaN fails too
            raise ValueError
        return float(value)

    def parse_text(self, text: str) -> float:
        return self.check(float(text))


class _CleanupPolicy(_Kind):
    """Kafka's cleanup.policy list: compact, delete or both (either order), as text or an array."""

    expect = "compact, delete, or compact,delete"
    metavar = "POLICY"
    values = ("compact", "delete")

    def check(self, value: Any) -> str:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError
        items = []
        for item in (v.strip() for v in value):
            if item not in self.values:
                raise ValueError
            if item not in items:
                items.append(item)
        if not items:
            raise ValueError
        return ",".join(items)


class _Bool(_Kind):
    expect = "true or false"
    words: ClassVar = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError
        return value

    def parse_text(self, text: str) -> bool:
        if text.lower() not in self.words:
            raise ValueError
        return self.words[text.lower()]


class _Choice(_Kind):
    def __init__(self, choices: tuple[str, ...], fold=str.lower):
        self.choices, self.fold = choices, fold
        self.expect = "one of " + ", ".join(choices)
        self.metavar = "{" + ",".join(choices) + "}"

    def check(self, value: Any) -> str:
        if self.fold(super().check(value)) not in self.choices:
            raise ValueError
        return self.fold(value)


class _Text(_Kind):
    def __init__(self, pattern: str, expect: str, metavar: str):
        self.pattern, self.expect, self.metavar = re.compile(pattern), expect, metavar

    def check(self, value: Any) -> str:
        if not self.pattern.fullmatch(super().check(value)):
            raise ValueError
        return value


class _Address(_Kind):
    """HOST:PORT -> (host, port); an IPv6 host goes in brackets: [::1]:9092. With off_ok,
    "off" or an empty value -> (None, None): the address is switched off."""

    metavar = "HOST:PORT"

    def __init__(self, low_port: int, wildcard_ok: bool, expect: str, off_ok: bool = False):
        self.low_port, self.wildcard_ok, self.expect, self.off_ok = low_port, wildcard_ok, expect, off_ok
        if off_ok:
            self.metavar = "HOST:PORT|off"

    def check(self, value: Any) -> tuple[str | None, int | None]:
        if self.off_ok and isinstance(value, str) and value.strip().lower() in ("", "off"):
            return None, None
        host, sep, port = super().check(value).rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError
        if not sep or not host or re.search(r"\s", host) or not port.isdigit():
            raise ValueError
        if not self.low_port <= int(port) <= 65535 or (host in LOOPBACK_OF_WILDCARD and not self.wildcard_ok):
            raise ValueError
        return host, int(port)


# --- the settings: one row each drives the TOML key, the environment variable and the flag ---


@dataclass(frozen=True)
class _Setting:
    name: str  # TOML key; PSTREAM_ + upper case; -- + kebab case; the field (listen: listen_host/_port)
    kind: _Kind
    help: str
    kafka: str | None = None  # Kafka's broker setting, accepted as a TOML key too


_SETTINGS = (
    _Setting("listen", _Address(0, True, "HOST:PORT with a port 0..65535 (0 picks a free port)"),
             "address to accept clients on"),
    _Setting("advertise", _Address(1, False, "HOST:PORT that clients can reach (no wildcard host, "
                                             "port 1..65535)"),
             "address clients are told to connect to (default: the listen address; 127.0.0.1 "
             "when listening on 0.0.0.0)"),
    _Setting("data_dir", _Text(r".+", "a non-empty path", "DIR"), "directory of the topics' logs"),
    _Setting("shards", _Int(1), "shard threads that write the logs (default: one per CPU core)"),
    _Setting("cores", _Int(1, 256), "processes serving Kafka, one per core; core k (a broker with node id "
                                    "node_id + k, on each listener's port + k) leads its share of the partitions"),
    _Setting("node_id", _Int(0, INT32_MAX), "this broker's id", "node.id"),
    _Setting("cluster", _Text(r"(etcd://)?[^,/\s]+:\d+(,[^,/\s]+:\d+)*(/[A-Za-z0-9._-]+)?",
                              "etcd://HOST:PORT[,HOST:PORT...][/NAME]", "URL"),
             "join the cluster whose metadata lives in this etcd, under /NAME (default /pstream); "
             "without it: one node, no cluster"),
    _Setting("cluster_lease_ms", _Int(1000, metavar="MS"),
             "cluster mode: a broker that cannot renew its etcd lease for this long loses its leaderships",
             "broker.session.timeout.ms"),
    _Setting("replica_lag_time_max_ms", _Int(1, metavar="MS"),
             "cluster mode: a follower that has not caught up for this long leaves the in-sync replicas",
             "replica.lag.time.max.ms"),
    _Setting("offsets_topic_num_partitions", _Int(1, 1000),
             "cluster mode: partitions of __consumer_offsets, over which the groups' coordinators spread "
             "(fixed once the topic exists)", "offsets.topic.num.partitions"),
    _Setting("offsets_topic_replication_factor", _Int(1, 32767),
             "cluster mode: replicas of each __consumer_offsets partition (fewer if fewer brokers are "
             "registered when it is created)", "offsets.topic.replication.factor"),
    _Setting("transaction_state_log_num_partitions", _Int(1, 1000),
             "cluster mode: partitions of __transaction_state, over which the transaction coordinators "
             "spread (fixed once the topic exists)", "transaction.state.log.num.partitions"),
    _Setting("transaction_state_log_replication_factor", _Int(1, 32767),
             "cluster mode: replicas of each __transaction_state partition (fewer if fewer brokers are "
             "registered when it is created)", "transaction.state.log.replication.factor"),
    _Setting("auto_leader_rebalance_enable", _Bool(),
             "cluster mode: the controller gives each partition's leadership back to its preferred (first) "
             "replica once it is in sync again", "auto.leader.rebalance.enable"),
    _Setting("leader_imbalance_check_interval_seconds", _Int(1, metavar="S"),
             "cluster mode: how often the controller looks for leaderships to give back",
             "leader.imbalance.check.interval.seconds"),
    _Setting("leader_imbalance_per_broker_percentage", _Int(0, 100, metavar="PERCENT"),
             "cluster mode: a broker gets its leaderships back once more than this share of the partitions "
             "it prefers are led elsewhere", "leader.imbalance.per.broker.percentage"),
    _Setting("inter_broker_listener_name", _Text(r"[A-Za-z0-9_]+", "a listener's name", "NAME"),
             "cluster mode: the listener brokers replicate and send each other requests through (default: the "
             "first); its TLS and SASL apply to them too", "inter.broker.listener.name"),
    _Setting("inter_broker_user", _Text(r"[^:]+:.+", "NAME:PASSWORD[:MECHANISM]", "USER"),
             "cluster mode: the SCRAM or PLAIN user brokers log in as on a SASL inter-broker listener (default: "
             "bootstrap_user); it needs CLUSTER_ACTION on the cluster (list it in super_users)"),
    _Setting("cluster_id", _Text(r"[A-Za-z0-9_-]+", "letters, digits, '-' and '_'", "ID"),
             "cluster id (default: generated once and kept in the data directory)"),
    _Setting("flush", _Choice(FLUSH_POLICIES), "when appended records are flushed to disk"),
    _Setting("flush_ms", _Int(0, metavar="MS"), "with --flush interval: flush at least this often"),
    _Setting("flush_bytes", _Int(1, metavar="BYTES"), "with --flush bytes: flush after this many bytes"),
    _Setting("auto_create_topics", _Bool(), "create a topic when a client asks for an unknown one",
             "auto.create.topics.enable"),
    _Setting("default_partitions", _Int(1, INT32_MAX), "partitions of an automatically created topic",
             "num.partitions"),
    _Setting("default_replication_factor", _Int(1, INT32_MAX),
             "replication factor of automatically created topics (more than 1 needs --cluster)",
             "default.replication.factor"),
    _Setting("message_max_bytes", _Int(0, INT32_MAX, metavar="BYTES"), "largest record batch a topic accepts",
             "message.max.bytes"),
    _Setting("retention_ms", _Int(0, unlimited=True, metavar="MS"), "delete segments older than this",
             "log.retention.ms"),
    _Setting("retention_bytes", _Int(0, unlimited=True, metavar="BYTES"),
             "delete old segments while a partition is larger than this", "log.retention.bytes"),
    _Setting("segment_bytes", _Int(14, 2**32 - 1, metavar="BYTES"), "roll to a new segment at this size",
             "log.segment.bytes"),
    _Setting("segment_ms", _Int(1, unlimited=True, metavar="MS"), "roll to a new segment at this age",
             "log.roll.ms"),
    _Setting("retention_check_ms", _Int(1, metavar="MS"), "how often retention deletes old segments",
             "log.retention.check.interval.ms"),
    _Setting("write_pool_bytes", _Int(1 << 20, metavar="BYTES"),
             "each shard's budget of write buffers (appends wait for the shard beyond it)"),
    _Setting("max_open_files", _Int(3, INT32_MAX), "segment descriptors kept open between appends "
             "(idle partitions close theirs, least recently appended first)"),
    _Setting("index_cache_bytes", _Int(0, metavar="BYTES"), "finalized segments' indexes held in memory "
             "(beyond it the least recently used are read back from their files when looked up)"),
    _Setting("connections_max_idle_ms", _Int(1, metavar="MS"), "close connections idle this long",
             "connections.max.idle.ms"),
    _Setting("socket_request_max_bytes", _Int(1024, INT32_MAX, metavar="BYTES"), "largest request accepted",
             "socket.request.max.bytes"),
    _Setting("max_connections", _Int(1, INT32_MAX), "client connections open at once",
             "max.connections"),
    _Setting("group_initial_rebalance_delay_ms", _Int(0, INT32_MAX, metavar="MS"),
             "how long a new consumer group waits for more members before its first rebalance",
             "group.initial.rebalance.delay.ms"),
    _Setting("group_min_session_timeout_ms", _Int(1, INT32_MAX, metavar="MS"),
             "shortest session timeout a group member may ask for", "group.min.session.timeout.ms"),
    _Setting("group_max_session_timeout_ms", _Int(1, INT32_MAX, metavar="MS"),
             "longest session timeout a group member may ask for", "group.max.session.timeout.ms"),
    _Setting("group_consumer_session_timeout_ms", _Int(1, INT32_MAX, metavar="MS"),
             "a member of a consumer-protocol group (KIP-848) is fenced after this long without a heartbeat",
             "group.consumer.session.timeout.ms"),
    _Setting("group_consumer_heartbeat_interval_ms", _Int(1, INT32_MAX, metavar="MS"),
             "how often members of a consumer-protocol group are told to heartbeat",
             "group.consumer.heartbeat.interval.ms"),
    _Setting("group_consumer_max_size", _Int(1, INT32_MAX),
             "most members a consumer-protocol group may have", "group.consumer.max.size"),
    _Setting("offsets_retention_minutes", _Int(1, INT32_MAX, metavar="MINUTES"),
             "keep an empty group's committed offsets this long", "offsets.retention.minutes"),
    _Setting("transaction_max_timeout_ms", _Int(1, INT32_MAX, metavar="MS"),
             "longest transaction.timeout.ms a transactional producer may ask for", "transaction.max.timeout.ms"),
    _Setting("transaction_abort_timed_out_transaction_cleanup_interval_ms", _Int(1, INT32_MAX, metavar="MS"),
             "how often transactions older than their timeout are looked for and aborted",
             "transaction.abort.timed.out.transaction.cleanup.interval.ms"),
    _Setting("transactional_id_expiration_ms", _Int(1, INT32_MAX, metavar="MS"),
             "forget a transactional id after this long without a transaction", "transactional.id.expiration.ms"),
    _Setting("transaction_remove_expired_transaction_cleanup_interval_ms", _Int(1, INT32_MAX, metavar="MS"),
             "how often idle transactional ids are looked for and forgotten",
             "transaction.remove.expired.transaction.cleanup.interval.ms"),
    _Setting("log_level", _Choice(LOG_LEVELS, str.upper), "level of the broker's log messages"),
    _Setting("listeners", _Text(r"\S+", "NAME://HOST:PORT[,NAME://HOST:PORT...]", "LISTENERS"),
             "several listeners, each with a security protocol (Kafka's form; instead of listen)", "listeners"),
    _Setting("advertised_listeners", _Text(r"\S+", "NAME://HOST:PORT[,...]", "LISTENERS"),
             "the address clients are told for each listener (default: its own)", "advertised.listeners"),
    _Setting("listener_security_protocol_map", _Text(r"\S+", "NAME:PROTOCOL[,...]", "MAP"),
             "each listener's protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
             "listener.security.protocol.map"),
    _Setting("ssl_certfile", _Text(r".+", "a path", "PEM"),
             "the server's certificate chain (PEM) for SSL and SASL_SSL listeners"),
    _Setting("ssl_keyfile", _Text(r".+", "a path", "PEM"), "the server's private key (PEM; default: in ssl_certfile)"),
    _Setting("ssl_key_password", _Text(r".*", "text", "PASSWORD"), "the private key's password", "ssl.key.password"),
    _Setting("ssl_cafile", _Text(r".+", "a path", "PEM"), "the CA certificates client certificates must chain to"),
    _Setting("ssl_client_auth", _Choice(("none", "requested", "required")),
             "ask TLS clients for a certificate (mTLS); its subject is then their principal", "ssl.client.auth"),
    _Setting("ssl_principal_mapping_rules", _Text(r".+", "RULE:pattern/replacement/[LU],...,DEFAULT", "RULES"),
             "how a client certificate's subject becomes a principal", "ssl.principal.mapping.rules"),
    _Setting("sasl_enabled_mechanisms", _Text(r"[A-Z0-9,-]+", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (comma list)",
                                              "MECHANISMS"),
             "the SASL mechanisms SASL listeners offer", "sasl.enabled.mechanisms"),
    _Setting("connection_failed_authentication_delay_ms", _Int(0, INT32_MAX, metavar="MS"),
             "how long a failed authentication waits before its answer (and the connection closes)",
             "connection.failed.authentication.delay.ms"),
    _Setting("connections_max_reauth_ms", _Int(0, INT32_MAX, metavar="MS"),
             "how long a SASL authentication lasts before the client must authenticate again on its connection "
             "(KIP-368; 0: for the connection's life)", "connections.max.reauth.ms"),
    _Setting("sasl_oauthbearer_jwks_file", _Text(r".+", "a path", "JSON"),
             "the JSON Web Key Set OAUTHBEARER tokens must be signed with (read again when it changes)"),
    _Setting("sasl_oauthbearer_expected_audience", _Text(r".+", "text", "AUDIENCE"),
             "the aud claim OAUTHBEARER tokens must carry", "sasl.oauthbearer.expected.audience"),
    _Setting("sasl_oauthbearer_expected_issuer", _Text(r".+", "text", "ISSUER"),
             "the iss claim OAUTHBEARER tokens must carry", "sasl.oauthbearer.expected.issuer"),
    _Setting("sasl_oauthbearer_sub_claim_name", _Text(r".+", "a claim name", "CLAIM"),
             "the claim that names the principal", "sasl.oauthbearer.sub.claim.name"),
    _Setting("sasl_oauthbearer_clock_skew_seconds", _Int(0, INT32_MAX, metavar="S"),
             "how far clocks may disagree on a token's times", "sasl.oauthbearer.clock.skew.seconds"),
    _Setting("bootstrap_user", _Text(r"[^:]+:.+", "NAME:PASSWORD[:MECHANISM]", "USER"),
             "a SCRAM user created at start if it does not exist (the first administrator)"),
    _Setting("authorization", _Choice(("none", "acls")),
             "none: every client may do everything; acls: only what the ACLs allow (Kafka's StandardAuthorizer)"),
    _Setting("super_users", _Text(r"[^;]*(;[^;]*)*", "User:NAME;User:NAME...", "PRINCIPALS"),
             "principals every ACL check allows", "super.users"),
    _Setting("allow_everyone_if_no_acl_found", _Bool(),
             "a resource no ACL names is open to everyone (default false)", "allow.everyone.if.no.acl.found"),
    _Setting("admin_api_require_auth", _Bool(),
             "the admin API asks for HTTP Basic credentials of a SCRAM user (readiness and metrics stay open); "
             "routes that change state need a super user"),
    _Setting("admin_api_tls", _Bool(), "serve the admin API over HTTPS with ssl_certfile and ssl_keyfile"),
    _Setting("storage_min_free_bytes", _Int(0, metavar="BYTES"),
             "refuse Produce (KAFKA_STORAGE_ERROR) while the data directory's filesystem has less free "
             "space than this (0: never; default: 1 GiB or 5%% of the filesystem, whichever is smaller)"),
    _Setting("admin_listen", _Address(0, True, "HOST:PORT with a port 0..65535 (0 picks a free port), "
                                               "or off", off_ok=True),
             "address of the admin HTTP API and Prometheus /metrics (off: none)"),
    # Memory bounds against misbehaving clients.
    _Setting("queued_max_request_bytes", _Int(1024, 2**62, metavar="BYTES"),
             "memory for requests being received or answered and responses not yet sent, for the whole "
             "broker; at least socket_request_max_bytes", "queued.max.request.bytes"),
    _Setting("connections_max_unsent_bytes", _Int(0, INT32_MAX, metavar="BYTES"),
             "a connection whose unsent responses exceed this is not read until they are sent"),
    _Setting("request_receive_timeout_ms", _Int(1, INT32_MAX, metavar="MS"),
             "close a connection whose request has not arrived whole this long after its first byte"),
    # Log compaction: defaults of topics that do not set them, and the cleaner.
    _Setting("cleanup_policy", _CleanupPolicy(), "what happens to old records of a topic: delete (retention "
             "removes old segments), compact (the cleaner keeps each key's latest record) or both",
             "log.cleanup.policy"),
    _Setting("min_cleanable_dirty_ratio", _Float(0, 1), "a compacted partition is cleaned once this share of "
             "its log is not yet cleaned", "log.cleaner.min.cleanable.ratio"),
    _Setting("min_compaction_lag_ms", _Int(0, INT64_MAX, metavar="MS"),
             "records younger than this are never compacted", "log.cleaner.min.compaction.lag.ms"),
    _Setting("max_compaction_lag_ms", _Int(1, INT64_MAX, metavar="MS"), "records older than this make their "
             "partition due for cleaning whatever its dirty ratio", "log.cleaner.max.compaction.lag.ms"),
    _Setting("delete_retention_ms", _Int(0, INT64_MAX, metavar="MS"), "how long a tombstone (a null value) is "
             "kept once its partition was cleaned", "log.cleaner.delete.retention.ms"),
    _Setting("cleaner_enable", _Bool(), "run the log cleaner, which compacts topics with cleanup_policy compact",
             "log.cleaner.enable"),
    _Setting("cleaner_threads", _Int(1, 64), "threads that clean compacted partitions", "log.cleaner.threads"),
    _Setting("cleaner_dedupe_buffer_bytes", _Int(1 << 20, 2**40, metavar="BYTES"),
             "memory of each cleaner thread's key map: the keys one cleaning pass can take (about 24 bytes a key)",
             "log.cleaner.dedupe.buffer.size"),
    _Setting("cleaner_backoff_ms", _Int(1, INT32_MAX, metavar="MS"),
             "how long a cleaner thread sleeps when no partition is due", "log.cleaner.backoff.ms"),
)
_BY_NAME = {s.name: s for s in _SETTINGS}
_BY_KEY = {**_BY_NAME, **{s.kafka: s for s in _SETTINGS if s.kafka}}
_BY_ENV = {ENV_PREFIX + s.name.upper(): s for s in _SETTINGS}
# Kafka's broker config name -> the BrokerConfig field that holds it (where pstream has one).
FIELD_OF_KAFKA_NAME = {s.kafka: s.name for s in _SETTINGS if s.kafka}
SECRET_SETTINGS = frozenset({"ssl_key_password", "bootstrap_user", "inter_broker_user"})   # never shown (admin API, logs)


def parse_kafka_value(name: str, text: str) -> Any:
    """The BrokerConfig value of Kafka broker config `name` given as text (-1: unlimited where
    the setting allows it); ConfigError with the setting's expectation otherwise."""
    s = _BY_KEY[name]
    try:
        return s.kind.parse_text(text.strip())
    except (TypeError, ValueError):
        raise ConfigError(f"Invalid value {text} for configuration {name}: pstream's {s.name} must be "
                          f"{s.kind.expect}") from None
_DEFAULTS = {f.name: f.default for f in fields(BrokerConfig)}


def _default_text(setting: _Setting) -> str | None:
    if isinstance(setting.kind, _Address):
        return _address_text(_DEFAULTS[setting.name + "_host"], _DEFAULTS[setting.name + "_port"])
    value = _DEFAULTS[setting.name]
    if value is None:
        return "-1" if getattr(setting.kind, "unlimited", False) else None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _address_text(host: str | None, port: int | None) -> str | None:
    if host is None:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def settings_of(config: BrokerConfig) -> dict[str, Any]:
    """The settings of `config` by setting name, as a TOML file would give them: addresses as
    HOST:PORT ("off" for an admin address switched off), -1 for unlimited, None where unset
    (a default chosen at start: advertise, shards, cluster_id)."""
    out: dict[str, Any] = {}
    for s in _SETTINGS:
        if isinstance(s.kind, _Address):
            value = _address_text(getattr(config, s.name + "_host"), getattr(config, s.name + "_port"))
            out[s.name] = "off" if value is None and s.kind.off_ok else value
        else:
            value = getattr(config, s.name)
            out[s.name] = -1 if value is None and getattr(s.kind, "unlimited", False) else value
            if s.name in SECRET_SETTINGS and value is not None:
                out[s.name] = "[hidden]"
    return out


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


@functools.lru_cache(maxsize=1)
def settings_schema() -> dict[str, dict]:
    """Each setting's JSON type, description, default, Kafka name, whether Kafka changes it at
    run time, and its choices: what the admin API's config schema serves."""
    from pstream.storage.kafka_configs import BROKER_CONFIG_DEFS

    defaults = settings_of(BrokerConfig())
    out = {}
    for s in _SETTINGS:
        default = defaults[s.name]
        kinds = {_Int: "integer", _Float: "number", _Bool: "boolean"}
        json_type = kinds.get(type(s.kind)) or next((t for py, t in _JSON_TYPES if isinstance(default, py)), "string")
        d = BROKER_CONFIG_DEFS.get(s.kafka) if s.kafka else None
        out[s.name] = {"type": json_type, "description": s.help.replace("%%", "%"), "default": default,
                       "kafka": s.kafka, "dynamic": d is not None and d.dynamic != "read-only",
                       "unlimited": bool(getattr(s.kind, "unlimited", False)),
                       "enum": list(getattr(s.kind, "choices", ())) or None}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --config and one flag per setting; each defaults to None ("not given")."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file of settings (else PSTREAM_CONFIG); flags and PSTREAM_* "
                             "variables override it")
    for s in _SETTINGS:
        notes = [f"Kafka {s.kafka}"] if s.kafka else []
        notes += ["-1: unlimited"] if getattr(s.kind, "unlimited", False) else []
        default = _default_text(s)
        notes += [f"default {default}"] if default is not None else []
        text = s.help + (f" ({'; '.join(notes)})" if notes else "")
        flag = "--" + s.name.replace("_", "-")
        if isinstance(s.kind, _Bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, metavar=s.kind.metavar, default=None, help=text)


def _hint(key: str, known, prefix: str = "") -> str:
    """A "did you mean" for an unknown name, comparing what follows the common `prefix`."""
    close = difflib.get_close_matches(key.removeprefix(prefix), [k.removeprefix(prefix) for k in known], n=1)
    return f"; did you mean {prefix + close[0]!r}?" if close else ""


def _apply(values: dict, entries: list[tuple[_Setting, str, Any]], origin: str, text: bool) -> None:
    """Checks each (setting, key as given, value) of one source and stores it in `values`;
    with `text`, string values are parsed (env, flags) rather than taken as typed (TOML)."""
    seen: dict[str, str] = {}
    for setting, key, value in entries:
        if setting.name in seen:
            raise ConfigError(f"setting {setting.name} is given twice in {origin}: "
                              f"as {seen[setting.name]!r} and as {key!r}")
        seen[setting.name] = key
        try:
            if text and isinstance(value, str):
                parsed = setting.kind.parse_text(value.strip())
            else:
                parsed = setting.kind.check(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {key} (from {origin}) must be {setting.kind.expect}, "
                              f"got {value!r}") from None
        if isinstance(setting.kind, _Address):
            values[setting.name + "_host"], values[setting.name + "_port"] = parsed
        else:
            values[setting.name] = parsed


def _flatten(table: dict, prefix: str = ""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _read_file(path: str, named_by: str) -> list[tuple[_Setting, str, Any]]:
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config file {path} (from {named_by}) cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    entries = []
    for key, value in _flatten(table):
        if key not in _BY_KEY:
            raise ConfigError(f"unknown setting {key!r} in {path}{_hint(key, _BY_KEY)}")
        entries.append((_BY_KEY[key], key, value))
    return entries


def _read_env(env: Mapping[str, str]) -> list[tuple[_Setting, str, Any]]:
    entries = []
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var in _OTHER_ENV or var.startswith(_OTHER_ENV_PREFIX):
            continue
        if var not in _BY_ENV:
            raise ConfigError(f"unknown environment variable {var}{_hint(var, _BY_ENV, ENV_PREFIX)}")
        entries.append((_BY_ENV[var], var, value))
    return entries


def _check_security(config: BrokerConfig, values: dict) -> None:
    from pstream.security.sasl import MECHANISM_NAMES

    if config.listeners is not None and ("listen_host" in values or "advertise_host" in values):
        raise ConfigError("give either listeners (with advertised_listeners) or listen (with advertise), not both")
    if config.advertised_listeners is not None and config.listeners is None:
        raise ConfigError("advertised_listeners needs listeners")
    listeners = config.listener_list()
    unknown = [m for m in config.sasl_mechanisms() if m not in MECHANISM_NAMES]
    if unknown or not config.sasl_mechanisms():
        raise ConfigError(f"sasl_enabled_mechanisms: {', '.join(unknown) or 'none given'}: pstream offers "
                          f"{', '.join(MECHANISM_NAMES)}")
    if "OAUTHBEARER" in config.sasl_mechanisms() and not config.sasl_oauthbearer_jwks_file:
        raise ConfigError("OAUTHBEARER needs sasl_oauthbearer_jwks_file: the keys its tokens are signed with")
    tls = [lis.name for lis in listeners if lis.tls]
    if tls and not config.ssl_certfile:
        raise ConfigError(f"listener {tls[0]} uses TLS: set ssl_certfile (and ssl_keyfile) to the server's "
                          f"certificate and key")
    if config.admin_api_tls and not config.ssl_certfile:
        raise ConfigError("admin_api_tls needs ssl_certfile (and ssl_keyfile): the certificate to serve HTTPS with")
    if config.ssl_client_auth != "none" and not config.ssl_cafile:
        raise ConfigError(f"ssl_client_auth={config.ssl_client_auth} needs ssl_cafile")
    if config.cluster:
        inter = config.inter_broker_listener()
        if inter is None:
            raise ConfigError(f"inter_broker_listener_name {config.inter_broker_listener_name!r} is not one of the "
                              f"listeners ({', '.join(lis.name for lis in listeners)})")
        if inter.sasl:
            user = config.inter_broker_credentials()
            if user is None:
                raise ConfigError(f"the inter-broker listener {inter.name} uses SASL: set inter_broker_user (or "
                                  f"bootstrap_user) to NAME:PASSWORD, the user brokers log in as")
            if user[2] not in config.sasl_mechanisms() or user[2] == "OAUTHBEARER":
                raise ConfigError(f"inter_broker_user's mechanism {user[2]} is not one the listeners offer "
                                  f"(sasl_enabled_mechanisms: {config.sasl_enabled_mechanisms}; PLAIN or SCRAM)")


def load_config(args: argparse.Namespace | Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None) -> BrokerConfig:
    """Builds the settings from defaults < TOML file < environment < `args` (see the module doc).

    `args` is the parsed command line (a Namespace from a parser given `add_arguments`; its
    other attributes are ignored) or a dict of setting names (Kafka names too) to values, in
    which unknown names are refused. None values mean "not given". `env` defaults to os.environ.
    """
    env = os.environ if env is None else env
    is_namespace = isinstance(args, argparse.Namespace)
    given = dict(vars(args) if is_namespace else args or {})
    config_path = given.pop("config", None)
    entries = []
    for key, value in given.items():
        if value is None or (is_namespace and key not in _BY_NAME):
            continue
        if key not in _BY_KEY:
            raise ConfigError(f"unknown setting {key!r} in the arguments{_hint(key, _BY_KEY)}")
        entries.append((_BY_KEY[key], "--" + key.replace("_", "-") if is_namespace else key, value))

    values: dict[str, Any] = {}
    named_by = "--config" if is_namespace else "config"
    if config_path is None and env.get("PSTREAM_CONFIG"):
        config_path, named_by = env["PSTREAM_CONFIG"], "PSTREAM_CONFIG"
    if config_path is not None:
        path = os.fspath(config_path)
        _apply(values, _read_file(path, named_by), path, text=False)
    _apply(values, _read_env(env), "the environment", text=True)
    _apply(values, entries, "the command line" if is_namespace else "the arguments", text=True)
    config = BrokerConfig(**values, admin_listen_given="admin_listen_host" in values)
    if config.group_consumer_heartbeat_interval_ms >= config.group_consumer_session_timeout_ms:
        raise ConfigError(f"group_consumer_heartbeat_interval_ms ({config.group_consumer_heartbeat_interval_ms}) "
                          f"must be less than group_consumer_session_timeout_ms "
                          f"({config.group_consumer_session_timeout_ms})")
    if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms:
        raise ConfigError(f"setting group_min_session_timeout_ms ({config.group_min_session_timeout_ms}) is larger "
                          f"than group_max_session_timeout_ms ({config.group_max_session_timeout_ms})")
    if config.min_compaction_lag_ms > config.max_compaction_lag_ms:
        raise ConfigError(f"setting min_compaction_lag_ms ({config.min_compaction_lag_ms}) is larger than "
                          f"max_compaction_lag_ms ({config.max_compaction_lag_ms})")
    _check_security(config, values)
    if config.default_replication_factor > 1 and not config.cluster:
        raise ConfigError(f"default_replication_factor {config.default_replication_factor} needs cluster mode "
                          f"(--cluster etcd://HOST:PORT): one node keeps one copy of each partition")
    if config.cluster and config.cores > 1:
        raise ConfigError("cluster mode serves on one core per broker for now: --cores must be 1 with --cluster")
    if config.queued_max_request_bytes < config.socket_request_max_bytes:
        raise ConfigError(f"setting queued_max_request_bytes ({config.queued_max_request_bytes}) is smaller than "
                          f"socket_request_max_bytes ({config.socket_request_max_bytes}): the largest request "
                          f"could never be received")
    return config
