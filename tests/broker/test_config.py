"""Broker settings: defaults, each source, their precedence, and every kind of refusal."""

from __future__ import annotations

import argparse

import pytest

from pstream.broker.config import BrokerConfig, add_arguments, load_config
from pstream.errors import ConfigError


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(flags)


@pytest.fixture
def toml(tmp_path):
    """Writes a TOML file and returns its path as a string."""

    def write(text: str, name: str = "pstream.toml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def refused(match: str, args=None, env=None) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(args, env={} if env is None else env)
    return str(info.value)


def test_defaults_are_the_dataclass_defaults():
    config = load_config(env={})
    assert config == BrokerConfig()
    assert config.advertised == ("127.0.0.1", 9092)
    assert config.shards is None and config.cluster_id is None
    assert config.retention_ms == 604800000 and config.retention_bytes is None


def test_no_flag_given_changes_nothing_and_every_flag_defaults_to_none():
    args = parse()
    assert all(value is None for value in vars(args).values())
    assert load_config(args, env={}) == BrokerConfig()


def test_topic_defaults_are_log_keyword_arguments(tmp_path):
    import pstream

    config = load_config({"segment_bytes": 4096, "message_max_bytes": 500, "retention_ms": -1}, env={})
    defaults = config.topic_defaults()
    assert defaults["max_message_bytes"] == 500 and defaults["retention_ms"] is None
    with pstream.Log(tmp_path / "data", shards=1, **defaults) as log:
        assert log.defaults.segment_bytes == 4096 and log.defaults.max_message_bytes == 500


def test_flags_are_parsed():
    config = load_config(parse(
        "--listen", "0.0.0.0:19092", "--advertise", "broker.example:9093", "--data-dir", "/srv/ps",
        "--shards", "3", "--node-id", "7", "--cluster-id", "MkU3OEVBNTcwNTJENDM2Qk",
        "--flush", "interval", "--flush-ms", "5", "--no-auto-create-topics", "--default-partitions", "4",
        "--log-level", "debug", "--max-connections", "12",
    ), env={})
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 19092)
    assert config.advertised == ("broker.example", 9093)
    assert (config.data_dir, config.shards, config.node_id) == ("/srv/ps", 3, 7)
    assert config.cluster_id == "MkU3OEVBNTcwNTJENDM2Qk"
    assert (config.flush, config.flush_ms, config.auto_create_topics) == ("interval", 5, False)
    assert (config.default_partitions, config.log_level, config.max_connections) == (4, "DEBUG", 12)


def test_environment_is_parsed():
    config = load_config(env={
        "PSTREAM_LISTEN": "[::1]:9000", "PSTREAM_DATA_DIR": "/data", "PSTREAM_AUTO_CREATE_TOPICS": "no",
        "PSTREAM_SEGMENT_BYTES": " 65536 ", "PSTREAM_FLUSH": "BYTES", "HOME": "/root",
    })
    assert (config.listen_host, config.listen_port, config.data_dir) == ("::1", 9000, "/data")
    assert config.advertised == ("::1", 9000)
    assert (config.auto_create_topics, config.segment_bytes, config.flush) == (False, 65536, "bytes")


@pytest.mark.parametrize("word, value", [("true", True), ("1", True), ("YES", True),
                                         ("false", False), ("0", False), ("No", False)])
def test_environment_booleans(word, value):
    assert load_config(env={"PSTREAM_AUTO_CREATE_TOPICS": word}).auto_create_topics is value


def test_file_uses_setting_names_and_kafka_names(toml):
    path = toml("""
listen = "0.0.0.0:9999"
data_dir = "/var/lib/pstream"
flush = "interval"
"num.partitions" = 6
"auto.create.topics.enable" = false
"message.max.bytes" = 2000000
"node.id" = 3
"default.replication.factor" = 1
"connections.max.idle.ms" = 1000
"socket.request.max.bytes" = 4096
log.segment.bytes = 1048576   # unquoted: nested tables in TOML, joined back into the dotted name
log.roll.ms = 3600000
""")
    config = load_config({"config": path}, env={})
    assert (config.listen_port, config.data_dir, config.flush) == (9999, "/var/lib/pstream", "interval")
    assert (config.default_partitions, config.auto_create_topics, config.node_id) == (6, False, 3)
    assert (config.message_max_bytes, config.connections_max_idle_ms) == (2000000, 1000)
    assert (config.socket_request_max_bytes, config.segment_bytes, config.segment_ms) == (4096, 1 << 20, 3600000)


def test_file_named_by_flag_or_environment(toml):
    path = toml("node_id = 5\n")
    assert load_config(parse("--config", path), env={}).node_id == 5
    assert load_config(env={"PSTREAM_CONFIG": path}).node_id == 5


def test_precedence_is_defaults_then_file_then_environment_then_flags(toml):
    path = toml('"num.partitions" = 2\nnode_id = 2\nflush_ms = 2\ndata_dir = "/file"\n')
    env = {"PSTREAM_CONFIG": path, "PSTREAM_NODE_ID": "3", "PSTREAM_FLUSH_MS": "3"}
    config = load_config(parse("--flush-ms", "4"), env=env)
    assert (config.default_partitions, config.node_id, config.flush_ms) == (2, 3, 4)
    assert config.data_dir == "/file" and config.log_level == "INFO"
    # The --config flag wins over PSTREAM_CONFIG: only its file is read.
    flag_path = toml("node_id = 9\n", name="flag.toml")
    config = load_config(parse("--config", flag_path), env={"PSTREAM_CONFIG": path})
    assert (config.node_id, config.default_partitions) == (9, 1)


@pytest.mark.parametrize("name, kafka", [("retention_ms", "log.retention.ms"),
                                         ("retention_bytes", "log.retention.bytes"),
                                         ("segment_ms", "log.roll.ms")])
def test_minus_one_means_unlimited_in_every_source(toml, name, kafka):
    flag = "--" + name.replace("_", "-")
    assert getattr(load_config(parse(f"{flag}=-1"), env={}), name) is None
    assert getattr(load_config(env={"PSTREAM_" + name.upper(): "-1"}), name) is None
    assert getattr(load_config({"config": toml(f'"{kafka}" = -1\n')}, env={}), name) is None
    assert getattr(load_config({name: 12345}, env={}), name) == 12345


def test_advertised_defaults_to_listen_and_loopback_for_wildcards():
    assert load_config({"listen": "10.1.2.3:9095"}, env={}).advertised == ("10.1.2.3", 9095)
    assert load_config({"listen": "0.0.0.0:9095"}, env={}).advertised == ("127.0.0.1", 9095)
    assert load_config({"listen": "[::]:9095"}, env={}).advertised == ("::1", 9095)
    config = load_config({"listen": "0.0.0.0:9095", "advertise": "kafka.local:1234"}, env={})
    assert config.advertised == ("kafka.local", 1234)


def test_listen_port_zero_picks_a_free_port():
    assert load_config({"listen": "127.0.0.1:0"}, env={}).listen_port == 0


# --- refusals: each names the setting and where it came from ---


def test_unknown_file_key_is_refused_with_a_suggestion(toml):
    path = toml("log.retention.hourz = 3\n")
    message = refused("unknown setting 'log.retention.hourz'", {"config": path})
    assert path in message and "log.retention.hours" not in message
    assert "did you mean 'log.retention.ms'" in message


def test_broker_table_is_not_a_section(toml):
    refused(r"unknown setting 'broker.listen' in .*pstream.toml", {"config": toml('[broker]\nlisten = "a:1"\n')})


def test_unknown_environment_variable_is_refused():
    message = refused("unknown environment variable PSTREAM_FOO", env={"PSTREAM_FOO": "1"})
    assert message == "unknown environment variable PSTREAM_FOO"  # no far-fetched suggestion
    assert "did you mean 'PSTREAM_DATA_DIR'" in refused("PSTREAM_DATA_DIRR", env={"PSTREAM_DATA_DIRR": "x"})


def test_non_setting_pstream_variables_are_allowed():
    env = {name: "1" for name in ("PSTREAM_BROKERS", "PSTREAM_CRC32C_SOFTWARE", "PSTREAM_ANNOTATE",
                                  "PSTREAM_DEBUG_BUILD", "PSTREAM_TEST_ANYTHING", "PSTREAM_BENCH_DIR")}
    assert load_config(env=env) == BrokerConfig()


def test_unknown_argument_key_is_refused_but_other_namespace_attributes_are_ignored():
    refused("unknown setting 'node_idd' in the arguments", {"node_idd": 1})
    assert load_config(argparse.Namespace(command="serve", verbose=True), env={}) == BrokerConfig()


def test_wrong_type_in_file_names_setting_and_file(toml):
    path = toml('"num.partitions" = "x"\n')
    message = refused("num.partitions", {"config": path})
    assert message == f"setting num.partitions (from {path}) must be an integer 1..2147483647, got 'x'"


@pytest.mark.parametrize("line, name", [
    ("auto_create_topics = 1", "auto_create_topics"),        # an int is not a bool in TOML
    ('"auto.create.topics.enable" = "true"', "auto.create.topics.enable"),
    ("default_partitions = true", "default_partitions"),     # nor a bool an int
    ("data_dir = 5", "data_dir"),
    ("listen = 9092", "listen"),
    ("flush_ms = 1.5", "flush_ms"),
    ("log_level = [\"INFO\"]", "log_level"),
])
def test_wrong_toml_types_are_refused(toml, line, name):
    assert f"setting {name} (from " in refused(name, {"config": toml(line + "\n")})


@pytest.mark.parametrize("var, value, expect", [
    ("PSTREAM_SHARDS", "two", "an integer >= 1"),
    ("PSTREAM_SHARDS", "0", "an integer >= 1"),
    ("PSTREAM_NODE_ID", "-1", "an integer 0..2147483647"),
    ("PSTREAM_DEFAULT_PARTITIONS", "0", "an integer 1..2147483647"),
    ("PSTREAM_FLUSH", "sometimes", "one of always, interval, bytes"),
    ("PSTREAM_SEGMENT_BYTES", "13", "an integer 14..4294967295"),
    ("PSTREAM_SEGMENT_BYTES", str(1 << 32), "an integer 14..4294967295"),
    ("PSTREAM_MESSAGE_MAX_BYTES", "-5", "an integer 0..2147483647"),
    ("PSTREAM_SOCKET_REQUEST_MAX_BYTES", "1023", "an integer 1024..2147483647"),
    ("PSTREAM_LOG_LEVEL", "TRACE", "one of DEBUG, INFO, WARNING, ERROR"),
    ("PSTREAM_RETENTION_MS", "-2", "an integer >= 0 or -1 (unlimited)"),
    ("PSTREAM_SEGMENT_MS", "0", "an integer >= 1 or -1 (unlimited)"),
    ("PSTREAM_AUTO_CREATE_TOPICS", "maybe", "true or false"),
    ("PSTREAM_CLUSTER_ID", "has space", "letters, digits, '-' and '_'"),
    ("PSTREAM_FLUSH_BYTES", "", "an integer >= 1"),
])
def test_out_of_range_environment_values_are_refused(var, value, expect):
    message = refused(var, env={var: value})
    assert message == f"setting {var} (from the environment) must be {expect}, got {value!r}"


def test_replication_factor_other_than_one_needs_a_cluster(toml):
    message = refused("default_replication_factor", {"config": toml('"default.replication.factor" = 3\n')})
    assert "needs cluster mode (--cluster etcd://HOST:PORT): one node keeps one copy" in message
    assert "default_replication_factor 2 needs cluster mode" in refused(
        "replication", parse("--default-replication-factor", "2"))
    clustered = load_config(parse("--default-replication-factor", "3", "--cluster", "etcd://127.0.0.1:2379"), env={})
    assert clustered.default_replication_factor == 3 and clustered.cluster == "etcd://127.0.0.1:2379"
    assert "--cores must be 1 with --cluster" in refused("cores", parse("--cores", "2", "--cluster", "127.0.0.1:2379"))
    assert "etcd://HOST:PORT" in refused("cluster", parse("--cluster", "http://127.0.0.1:2379"))


def test_the_inter_broker_listener_must_exist_and_a_sasl_one_needs_a_user():
    cluster = ("--cluster", "127.0.0.1:2379")
    listeners = ("--listeners", "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093")
    assert "'INTERNAL' is not one of the listeners (PLAINTEXT, SASL_PLAINTEXT)" in refused(
        "inter_broker_listener_name", parse(*cluster, *listeners, "--inter-broker-listener-name", "INTERNAL"))
    assert "uses SASL: set inter_broker_user (or bootstrap_user) to NAME:PASSWORD" in refused(
        "inter_broker_user", parse(*cluster, *listeners, "--inter-broker-listener-name", "SASL_PLAINTEXT"))
    assert "mechanism OAUTHBEARER is not one the listeners offer" in refused("mechanism", parse(
        *cluster, *listeners, "--inter-broker-listener-name", "SASL_PLAINTEXT", "--inter-broker-user",
        "kafka:secret:OAUTHBEARER"))
    config = load_config(parse(*cluster, *listeners, "--inter-broker-listener-name", "SASL_PLAINTEXT",
                               "--bootstrap-user", "kafka:secret", "--sasl-enabled-mechanisms", "PLAIN"), env={})
    assert config.inter_broker_listener().name == "SASL_PLAINTEXT"
    assert config.inter_broker_credentials() == ("kafka", "secret", "PLAIN")   # the bootstrap user, a mechanism offered
    assert load_config(parse(*listeners), env={}).inter_broker_listener().name == "PLAINTEXT"   # the first


@pytest.mark.parametrize("flag, value", [
    ("--listen", "localhost"), ("--listen", "localhost:"), ("--listen", ":9092"),
    ("--listen", "localhost:http"), ("--listen", "localhost:65536"), ("--listen", "::1:9092"),
    ("--listen", "my host:9092"), ("--advertise", "localhost:0"), ("--advertise", "0.0.0.0:9092"),
])
def test_malformed_addresses_are_refused(flag, value):
    message = refused(flag, parse(f"{flag}={value}"))
    assert message.startswith(f"setting {flag} (from the command line) must be HOST:PORT")
    assert message.endswith(f"got {value!r}")


def test_missing_config_file_is_refused(tmp_path):
    missing = str(tmp_path / "nope.toml")
    message = refused("cannot be read", parse("--config", missing))
    assert missing in message and "--config" in message
    assert "PSTREAM_CONFIG" in refused("cannot be read", env={"PSTREAM_CONFIG": missing})


def test_unparseable_config_file_is_refused(toml):
    path = toml("listen = \n")
    assert path in refused("is not valid TOML", {"config": path})


def test_setting_given_twice_in_one_file_is_refused(toml):
    path = toml('"num.partitions" = 2\ndefault_partitions = 3\n')
    message = refused("given twice", {"config": path})
    assert "default_partitions" in message and "'num.partitions'" in message and path in message


def test_environment_refusal_happens_even_when_a_flag_overrides_it():
    refused("PSTREAM_NODE_ID", parse("--node-id", "1"), env={"PSTREAM_NODE_ID": "x"})


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_config({"shards": 0}, env={})


def test_group_settings_from_every_source(toml):
    defaults = load_config(env={})
    assert (defaults.group_initial_rebalance_delay_ms, defaults.group_min_session_timeout_ms,
            defaults.group_max_session_timeout_ms, defaults.offsets_retention_minutes) == (3000, 6000, 1800000, 10080)
    path = toml('"group.initial.rebalance.delay.ms" = 0\n"group.min.session.timeout.ms" = 1000\n'
                '"group.max.session.timeout.ms" = 60000\n"offsets.retention.minutes" = 5\n')
    config = load_config({"config": path}, env={})
    assert (config.group_initial_rebalance_delay_ms, config.group_min_session_timeout_ms,
            config.group_max_session_timeout_ms, config.offsets_retention_minutes) == (0, 1000, 60000, 5)
    assert load_config(env={"PSTREAM_OFFSETS_RETENTION_MINUTES": "7"}).offsets_retention_minutes == 7
    assert load_config(parse("--group-initial-rebalance-delay-ms", "100"), env={}).group_initial_rebalance_delay_ms \
        == 100


def test_group_session_timeout_bounds_must_be_ordered():
    message = refused("group_min_session_timeout_ms", parse("--group-min-session-timeout-ms", "7000",
                                                             "--group-max-session-timeout-ms", "6999"))
    assert "larger than group_max_session_timeout_ms" in message
    refused("an integer 1..2147483647", env={"PSTREAM_OFFSETS_RETENTION_MINUTES": "0"})


# --- log compaction ---------------------------------------------------------------------------


def test_compaction_settings_from_every_source_with_kafkas_names(toml):
    defaults = load_config(env={})
    assert (defaults.cleanup_policy, defaults.min_cleanable_dirty_ratio, defaults.min_compaction_lag_ms,
            defaults.max_compaction_lag_ms, defaults.delete_retention_ms) == ("delete", 0.5, 0, 2**63 - 1, 86400000)
    assert (defaults.cleaner_enable, defaults.cleaner_threads, defaults.cleaner_backoff_ms) == (True, 1, 15000)
    path = toml('"log.cleanup.policy" = ["delete", "compact"]\n"log.cleaner.min.cleanable.ratio" = 0.1\n'
                '"log.cleaner.delete.retention.ms" = 1000\n"log.cleaner.enable" = false\n'
                '"log.cleaner.threads" = 2\n"log.cleaner.dedupe.buffer.size" = 2097152\n'
                '"log.cleaner.backoff.ms" = 50\n"log.cleaner.min.compaction.lag.ms" = 7\n'
                '"log.cleaner.max.compaction.lag.ms" = 8\n')
    config = load_config({"config": path}, env={})
    assert config.topic_defaults() | {"max_message_bytes": 0} == defaults.topic_defaults() | {
        "cleanup_policy": "delete,compact", "min_cleanable_dirty_ratio": 0.1, "delete_retention_ms": 1000,
        "min_compaction_lag_ms": 7, "max_compaction_lag_ms": 8, "max_message_bytes": 0}
    assert config.cleaner_options() == {"cleaner": False, "cleaner_threads": 2, "dedupe_buffer_bytes": 2 << 20,
                                        "cleaner_backoff_ms": 50}
    assert load_config(env={"PSTREAM_CLEANUP_POLICY": "compact"}).cleanup_policy == "compact"
    assert load_config(parse("--min-cleanable-dirty-ratio", "1"), env={}).min_cleanable_dirty_ratio == 1.0
    assert load_config(parse("--no-cleaner-enable"), env={}).cleaner_enable is False


@pytest.mark.parametrize("args,expect", [
    ({"cleanup_policy": "bogus"}, "compact, delete, or compact,delete"),
    ({"cleanup_policy": ""}, "compact, delete, or compact,delete"),
    ({"min_cleanable_dirty_ratio": "nan"}, "a number 0..1"),
    ({"min_cleanable_dirty_ratio": "1.01"}, "a number 0..1"),
    ({"max_compaction_lag_ms": "0"}, "an integer 1.."),
    ({"cleaner_threads": "0"}, "an integer 1..64"),
    ({"min_compaction_lag_ms": "9", "max_compaction_lag_ms": "8"}, "larger than max_compaction_lag_ms"),
])
def test_bad_compaction_settings_are_refused(args, expect):
    refused(expect, args)


def test_compaction_defaults_reach_new_topics(tmp_path):
    import pstream

    config = load_config({"cleanup_policy": "compact", "delete_retention_ms": "5"}, env={})
    with pstream.Log(tmp_path / "data", shards=1, **config.topic_defaults()) as log:
        topic = log.topic("t")
        assert (topic.config.cleanup_policy, topic.config.compacted, topic.config.delete_retention_ms) == \
            ("compact", True, 5)
