"""The `pstream` command line driven as a user drives it: subprocesses against a real broker.

Each test runs `python -m pstream ...` (the installed package) and checks what it printed
and its exit code against what the broker holds, read back through the same commands or
through the raw wire client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import kafka_wire
import pytest


def run(broker, *args: str, stdin: bytes | None = None, check: bool = True, timeout: float = 60):
    """Runs `pstream --brokers <broker> ARGS`; returns the CompletedProcess (text output)."""
    cmd = [sys.executable, "-P", "-m", "pstream", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    if broker is not None:
        env["PSTREAM_BROKERS"] = broker.bootstrap
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env, check=False)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def rows(text: str) -> list[list[str]]:
    """The body of a printed table (header line dropped), split on whitespace."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [line.split() for line in lines[1:]]


def table_after(text: str, header_start: str) -> list[list[str]]:
    """The rows of the table whose header line starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


def consume_json(broker, topic: str, *extra: str) -> list[dict]:
    out = run(broker, "consume", topic, "-e", "-f", "json", *extra)
    return [json.loads(line) for line in out.stdout.splitlines()]


# --- topics --------------------------------------------------------------------------


def test_topic_lifecycle_create_describe_alter_grow_delete(broker):
    out = run(broker, "topic", "create", "orders", "-p", "3", "-c", "retention.ms=3600000")
    assert "created topic orders (3 partitions)" in out.stdout
    assert ["orders", "3", "no"] in rows(run(broker, "topic", "list").stdout)

    desc = run(broker, "topic", "describe", "orders").stdout
    partitions = table_after(desc, "PARTITION")
    assert [r[0] for r in partitions] == ["0", "1", "2"]
    assert all(r[3:6] == ["0", "0", "0"] for r in partitions)   # log start, high watermark, records
    configs = {r[0]: r[1:] for r in table_after(desc, "CONFIG")}
    assert configs["retention.ms"] == ["3600000", "dynamic", "topic"]
    assert configs["cleanup.policy"] == ["delete", "default"]

    run(broker, "topic", "alter-config", "orders", "--set", "segment.ms=60000", "--delete", "retention.ms")
    configs = {r[0]: r[1:] for r in table_after(run(broker, "topic", "describe", "orders").stdout, "CONFIG")}
    assert configs["segment.ms"] == ["60000", "dynamic", "topic"]
    assert configs["retention.ms"][-1] == "default"

    assert "now has 5 partitions" in run(broker, "topic", "add-partitions", "orders", "-n", "2").stdout
    assert ["orders", "5", "no"] in rows(run(broker, "topic", "list").stdout)

    run(broker, "topic", "delete", "orders")
    assert not any(r[0] == "orders" for r in rows(run(broker, "topic", "list").stdout))


def test_describe_counts_records_and_bytes_per_partition(broker):
    run(broker, "topic", "create", "sized", "-p", "2")
    run(broker, "produce", "sized", "-p", "1", stdin=b"".join(b"line %d\n" % i for i in range(50)))
    desc = run(broker, "topic", "describe", "sized").stdout
    parts = {r[0]: r for r in table_after(desc, "PARTITION")}
    assert parts["0"][3:7] == ["0", "0", "0", "0"]
    assert parts["1"][3:6] == ["0", "50", "50"]
    assert int(parts["1"][6]) > 50 * 6   # bytes on disk, from DescribeLogDirs
    assert "records 50" in desc


def test_tables_are_aligned(broker):
    run(broker, "topic", "create", "a", "-p", "12")
    run(broker, "topic", "create", "a-much-longer-topic-name")
    lines = run(broker, "topic", "list").stdout.splitlines()
    # Numbers are right-aligned under their header, names left-aligned at column 0.
    end = lines[0].index("PARTITIONS") + len("PARTITIONS")
    assert len(lines) == 3
    for line in lines[1:]:
        assert line[0] == "a" and line[end - 1].isdigit() and line[end] == " ", lines


# --- produce and consume -------------------------------------------------------------


def test_produce_a_file_and_consume_it_back_as_json(broker, tmp_path):
    run(broker, "topic", "create", "events", "-p", "4")
    lines = [f"user{i % 7}:event {i} é" for i in range(2000)]
    path = tmp_path / "events.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run(broker, "produce", "events", "-f", str(path), "-k", ":", "-H", "source=cli-test", "-z", "lz4")
    assert "produced 2000 records" in out.stderr

    got = consume_json(broker, "events")
    assert len(got) == 2000
    assert sorted((r["key"], r["value"]) for r in got) == sorted(tuple(line.split(":", 1)) for line in lines)
    assert all(r["headers"] == [{"key": "source", "value": "cli-test"}] for r in got)
    # One key, one partition; and within a partition a key's records keep their file order.
    by_key: dict[str, set[int]] = {}
    for r in got:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(parts) == 1 for parts in by_key.values())
    for key in by_key:
        values = [r["value"] for r in sorted(got, key=lambda r: r["offset"]) if r["key"] == key]
        assert values == [line.split(":", 1)[1] for line in lines if line.startswith(key + ":")]
    # The batches really are lz4 (codec 3), as the wire shows.
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        partition = got[0]["partition"]
        header, _ = wire.fetch_all("events", partition)[0]
        assert header.compression == 3


def test_keyed_lines_land_where_librdkafka_murmur2_puts_them(broker):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    for topic in ("by-cli", "by-librdkafka"):
        run(broker, "topic", "create", topic, "-p", "6")
    keys = [f"key-{i}" for i in range(60)]
    run(broker, "produce", "by-cli", "-k", "=", stdin="".join(f"{k}=v\n" for k in keys).encode())
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2"})
    for k in keys:
        producer.produce("by-librdkafka", key=k.encode(), value=b"v")
    assert producer.flush(30) == 0
    cli = {r["key"]: r["partition"] for r in consume_json(broker, "by-cli")}
    rdkafka = {r["key"]: r["partition"] for r in consume_json(broker, "by-librdkafka")}
    assert cli == rdkafka and len(set(cli.values())) > 1


def test_consume_offsets_start_end_n_relative_and_timestamp(broker):
    run(broker, "topic", "create", "seq")
    run(broker, "produce", "seq", stdin=b"".join(b"%d\n" % i for i in range(10)))
    time.sleep(0.05)
    marker = int(time.time() * 1000)
    time.sleep(0.05)
    run(broker, "produce", "seq", stdin=b"".join(b"%d\n" % i for i in range(10, 15)))

    assert run(broker, "consume", "seq", "-e").stdout.split() == [str(i) for i in range(15)]
    assert run(broker, "consume", "seq", "-e", "-o", "end").stdout == ""
    assert run(broker, "consume", "seq", "-o", "5", "-n", "2").stdout.split() == ["5", "6"]
    assert run(broker, "consume", "seq", "-e", "-o", "-3").stdout.split() == ["12", "13", "14"]
    assert run(broker, "consume", "seq", "-e", "-o", f"@{marker}").stdout.split() == ["10", "11", "12", "13", "14"]
    templated = run(broker, "consume", "seq", "-n", "2", "-f", "{partition}/{offset}={value}").stdout
    assert templated.splitlines() == ["0/0=0", "0/1=1"]


def test_consume_waits_for_records_produced_later(broker):
    run(broker, "topic", "create", "later")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    env["PSTREAM_BROKERS"] = broker.bootstrap
    consumer = subprocess.Popen([sys.executable, "-P", "-m", "pstream", "consume", "later", "-n", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(1.0)
        assert consumer.poll() is None   # nothing yet: it waits
        run(broker, "produce", "later", stdin=b"x\ny\nz\n")
        out, err = consumer.communicate(timeout=30)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, err
    assert out.decode().split() == ["x", "y", "z"]


# --- groups --------------------------------------------------------------------------


def test_group_consume_describe_lag_and_seek(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    run(broker, "topic", "create", "work", "-p", "2")
    run(broker, "produce", "work", "-p", "0", stdin=b"".join(b"a%d\n" % i for i in range(60)))
    run(broker, "produce", "work", "-p", "1", stdin=b"".join(b"b%d\n" % i for i in range(40)))

    first = run(broker, "consume", "work", "-g", "workers", "-n", "70").stdout.split()
    assert len(first) == 70 and len(set(first)) == 70

    desc = run(broker, "group", "describe", "workers").stdout
    assert "state Empty" in desc
    offsets = {r[1]: r for r in table_after(desc, "TOPIC")}
    committed = {p: int(r[2]) for p, r in offsets.items()}
    assert sum(committed.values()) == 70
    assert {p: int(r[3]) for p, r in offsets.items()} == {"0": 60, "1": 40}
    assert sum(int(r[4]) for r in offsets.values()) == 30
    assert "total lag 30" in desc
    assert ["workers", "Empty", "consumer", "classic"] in rows(run(broker, "group", "list").stdout)

    # The next member of the group goes on from the committed offsets: together, all 100 once.
    rest = run(broker, "consume", "work", "-g", "workers", "-e").stdout.split()
    assert sorted(first + rest) == sorted([f"a{i}" for i in range(60)] + [f"b{i}" for i in range(40)])

    run(broker, "group", "seek", "workers", "--to", "start")
    offsets = table_after(run(broker, "group", "describe", "workers").stdout, "TOPIC")
    assert [(r[1], r[2], r[4]) for r in offsets] == [("0", "0", "60"), ("1", "0", "40")]
    run(broker, "group", "seek", "workers", "--to", "55", "--topic", "work")
    again = run(broker, "consume", "work", "-g", "workers", "-e").stdout.split()
    assert sorted(again) == sorted(["a55", "a56", "a57", "a58", "a59"])

    run(broker, "group", "delete", "workers")
    assert not any(r and r[0] == "workers" for r in rows(run(broker, "group", "list").stdout))


def test_group_describe_shows_live_members_and_seek_refuses_them(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    run(broker, "topic", "create", "live", "-p", "3")
    run(broker, "produce", "live", stdin=b"".join(b"%d\n" % i for i in range(30)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    env["PSTREAM_BROKERS"] = broker.bootstrap
    consumer = subprocess.Popen([sys.executable, "-P", "-m", "pstream", "consume", "live", "-g", "watchers"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            desc = run(broker, "group", "describe", "watchers", check=False).stdout   # not there until joined
            if "state Stable" in desc and "total lag 0" in desc:
                break
            assert time.monotonic() < deadline, desc
            time.sleep(0.2)
        members = table_after(desc, "MEMBER")
        assert len(members) == 1
        assert members[0][-1] == "live:0,1,2"
        owner = members[0][0]
        assert all(r[-1] == owner for r in table_after(desc, "TOPIC"))
        refused = run(broker, "group", "seek", "watchers", "--to", "start", check=False)
        assert refused.returncode == 1 and "active member" in refused.stderr
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)


def test_two_group_members_share_the_partitions_and_each_record_once(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    run(broker, "topic", "create", "shared", "-p", "2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    env["PSTREAM_BROKERS"] = broker.bootstrap
    members = []

    def assignment() -> list[str]:
        desc = run(broker, "group", "describe", "sharing", check=False).stdout
        return sorted(r[-1] for r in table_after(desc, "MEMBER")) if "state Stable" in desc else []

    try:
        for expected in (["shared:0,1"], ["shared:0", "shared:1"]):
            members.append(subprocess.Popen([sys.executable, "-P", "-m", "pstream", "consume", "shared", "-g",
                                             "sharing"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
            deadline = time.monotonic() + 60   # the first member rejoins on its next heartbeat (3 s)
            while assignment() != expected:
                assert time.monotonic() < deadline, assignment()
                time.sleep(0.2)
        for p in (0, 1):
            run(broker, "produce", "shared", "-p", str(p), stdin=b"".join(b"p%d-%d\n" % (p, i) for i in range(10)))
        deadline = time.monotonic() + 30
        while "total lag 0" not in run(broker, "group", "describe", "sharing").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for m in members:
            m.terminate()
        outputs = [m.communicate(timeout=30)[0].decode().split() for m in members]
    assert sorted(outputs[0] + outputs[1]) == sorted(f"p{p}-{i}" for p in (0, 1) for i in range(10))
    assert {v[:2] for v in outputs[0]} != {v[:2] for v in outputs[1]}   # one partition each


# --- cluster -------------------------------------------------------------------------


def test_cluster_info_and_health(broker):
    info = run(broker, "cluster", "info").stdout
    assert "controller 0" in info
    assert ["0", "127.0.0.1", str(broker.port), "-"] in table_after(info, "ID")
    health = run(broker, "cluster", "health")
    assert "healthy: true" in health.stdout and health.returncode == 0


def test_health_of_an_unreachable_cluster_exits_1(broker):
    port = broker.port
    broker.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    out = subprocess.run([sys.executable, "-P", "-m", "pstream", "--brokers", f"127.0.0.1:{port}", "cluster",
                          "health"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.returncode == 1
    assert "healthy: false" in out.stdout and "cannot connect" in out.stdout


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["topic", "describe", "missing"], "topic 'missing': UNKNOWN_TOPIC_OR_PARTITION"),
    (["topic", "create", "bad/name"], "INVALID_TOPIC_EXCEPTION"),
    (["topic", "create", "t", "-c", "retention.ms"], "config 'retention.ms' is not KEY=VALUE"),
    (["topic", "create", "t", "-c", "retention.ms=soon"], "INVALID_CONFIG"),
    (["consume", "missing", "-e"], "UNKNOWN_TOPIC_OR_PARTITION"),
    (["consume", "t0", "-o", "later"], "--offset 'later' is not start, end, N, -N or @TIMESTAMP_MS"),
    (["consume", "t0", "-f", "{nope}"], "--format '{nope}'"),
    (["produce", "t0", "-p", "7"], "topic 't0' has no partition 7 (it has 1)"),
    (["group", "describe", "nobody"], "group 'nobody' does not exist"),
])
def test_errors_are_one_line_and_exit_1(broker, args, message):
    run(broker, "topic", "create", "t0")
    out = run(broker, *args, stdin=b"x\n", check=False)
    assert out.returncode == 1, out
    assert out.stderr.startswith("pstream: ") and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_debug_shows_the_traceback_and_usage_errors_exit_2(broker):
    out = run(broker, "--debug", "topic", "describe", "missing", check=False)
    assert out.returncode == 1 and "Traceback" in out.stderr and "KafkaError" in out.stderr
    usage = run(broker, "topic", "create", check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    assert run(None, "--brokers", "not-an-address", "topic", "list", check=False).stderr.strip() == \
        "pstream: broker address 'not-an-address' is not HOST:PORT"


def test_every_command_has_help():
    for args in (["--help"], ["topic", "--help"], ["topic", "create", "--help"], ["produce", "--help"],
                 ["consume", "--help"], ["group", "seek", "--help"], ["cluster", "health", "--help"],
                 ["log", "verify", "--help"], ["serve", "--help"]):
        out = run(None, *args)
        assert out.stdout.startswith("usage: pstream")


# --- offline log tools ---------------------------------------------------------------


def test_log_dump_and_verify_find_a_corrupted_byte(broker, tmp_path):
    run(broker, "topic", "create", "audit", "-p", "2")
    for i in range(3):
        run(broker, "produce", "audit", "-p", "1", "-z", "zstd" if i else "none",
            stdin=b"".join(b"entry %d-%d\n" % (i, j) for j in range(100)))
    broker.stop()
    partition = os.path.join(broker.data_dir, "audit", "1")

    dump = run(None, "log", "dump", partition).stdout
    batches = [line for line in dump.splitlines() if line.strip().startswith("position")]
    assert len(batches) == 3
    assert "offsets 0..99  records 100" in batches[0] and "codec none" in batches[0]
    assert "offsets 200..299" in batches[2] and "codec zstd" in batches[2]
    assert "producer -1" in batches[0]
    with_records = run(None, "log", "dump", partition, "--records").stdout
    assert "offset 150 " in with_records and "'entry 1-50'" in with_records

    ok = run(None, "log", "verify", broker.data_dir)
    assert "2 segment(s), 3 batches, 300 records" in ok.stdout and "all CRCs match" in ok.stdout
    assert "3 batches, 300 records" in run(None, "log", "verify", partition).stdout

    # Flip one byte in the second batch of a copy: verify names the batch's position.
    copy = tmp_path / "copy"
    shutil.copytree(partition, copy)
    segment = copy / "00000000000000000000.log"
    second = int(batches[1].split("position ")[1].split(":")[0])
    data = bytearray(segment.read_bytes())
    data[second + 100] ^= 0x40
    segment.write_bytes(bytes(data))
    bad = run(None, "log", "verify", str(copy), check=False)
    assert bad.returncode == 1
    assert f"at position {second}: batch claiming base offset 100: CRC-32C mismatch" in bad.stdout
    assert "1 good batches before it" in bad.stdout
    assert run(None, "log", "dump", str(copy), check=False).returncode == 1


def test_log_verify_reports_a_torn_tail(broker, tmp_path):
    run(broker, "topic", "create", "torn")
    run(broker, "produce", "torn", stdin=b"one\ntwo\n")
    run(broker, "produce", "torn", stdin=b"three\n")
    broker.stop()
    segment = os.path.join(broker.data_dir, "torn", "0", "00000000000000000000.log")
    first = run(None, "log", "dump", segment).stdout
    line = next(line for line in first.splitlines() if "offsets 2..2" in line)
    second = int(line.split("position ")[1].split(":")[0])
    with open(segment, "r+b") as f:
        f.truncate(second + 30)   # the last batch cut inside its header
    bad = run(None, "log", "verify", segment, check=False)
    assert bad.returncode == 1 and f"at position {second}" in bad.stdout
    missing = run(None, "log", "verify", str(tmp_path / "nothing"), check=False)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr


# --- terminals -----------------------------------------------------------------------


def run_on_terminal(broker, *args: str) -> tuple[int, str]:
    """Runs a command with stdout and stderr on a pseudo-terminal; (exit code, what it showed)."""
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_") and k != "NO_COLOR"}
    env.update(PSTREAM_BROKERS=broker.bootstrap, TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-P", "-m", "pstream", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env)
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=60), shown.decode(errors="replace")


def test_progress_and_colours_only_on_a_terminal(broker, tmp_path):
    run(broker, "topic", "create", "tty")
    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(5000)))
    code, shown = run_on_terminal(broker, "produce", "tty", "-f", str(path))
    assert code == 0 and "5,000 records" in shown and "MB/s" in shown
    piped = run(broker, "produce", "tty", "-f", str(path))
    assert "MB/s" not in piped.stderr

    code, shown = run_on_terminal(broker, "topic", "list")
    assert code == 0 and "\033[1mNAME" in shown
    assert "\033[" not in run(broker, "topic", "list").stdout


def test_topic_trim_deletes_records_below_an_offset_or_the_end(broker):
    run(broker, "topic", "create", "trimmed", "-p", "2")
    run(broker, "produce", "trimmed", "-p", "0", stdin=b"".join(b"a%d\n" % i for i in range(10)))
    run(broker, "produce", "trimmed", "-p", "1", stdin=b"".join(b"b%d\n" % i for i in range(5)))
    out = run(broker, "topic", "trim", "trimmed", "--before", "4", "-p", "0").stdout
    assert "trimmed-0: records below 4 deleted" in out
    assert run(broker, "consume", "trimmed", "-p", "0", "-o", "start", "-e").stdout.split() == \
        [f"a{i}" for i in range(4, 10)]
    assert "trimmed-1: records below 5 deleted" in run(broker, "topic", "trim", "trimmed", "--before", "end").stdout
    assert run(broker, "consume", "trimmed", "-p", "1", "-o", "start", "-e").stdout.split() == []
    bad = run(broker, "topic", "trim", "trimmed", "--before", "soon", check=False)
    assert bad.returncode == 1 and "--before takes an offset or end" in bad.stderr
    past = run(broker, "topic", "trim", "trimmed", "--before", "99", "-p", "0", check=False)
    assert past.returncode == 1 and "OFFSET_OUT_OF_RANGE" in past.stderr


def test_group_offset_delete_forgets_a_topics_committed_offsets(broker):
    run(broker, "topic", "create", "a", "-p", "2")
    run(broker, "topic", "create", "b")
    from pstream.client import KafkaClient
    with KafkaClient(broker.bootstrap) as client:
        client.commit_offsets("g", {("a", 0): 3, ("a", 1): 4, ("b", 0): 5})
    out = run(broker, "group", "offset-delete", "g", "--topic", "a").stdout
    assert "deleted the committed offsets of group g on a-0, a-1" in out
    with KafkaClient(broker.bootstrap) as client:
        assert client.committed_offsets("g") == {("b", 0): 5}
    missing = run(broker, "group", "offset-delete", "g", "--topic", "a", check=False)
    assert missing.returncode == 1 and "no committed offsets on topic a" in missing.stderr


def test_every_list_and_describe_prints_one_json_document_with_format_json(broker):
    run(broker, "topic", "create", "js", "-p", "2", "-c", "retention.ms=60000")
    run(broker, "produce", "js", "-p", "0", stdin=b"a\nb\n")
    run(broker, "consume", "js", "-g", "js-group", "-n", "2", "-o", "start")

    def doc(*args):
        return json.loads(run(broker, *args, "--format", "json").stdout)

    listed = doc("topic", "list")
    assert {"name": "js", "partitions": 2, "internal": False} in listed
    [topic] = doc("topic", "describe", "js")
    assert (topic["name"], topic["records"], len(topic["partitions"])) == ("js", 2, 2)
    assert topic["partitions"][0]["high_watermark"] == 2
    assert {"config": "retention.ms", "value": "60000", "source": "dynamic topic"} in topic["configs"]
    assert any(g["group"] == "js-group" for g in doc("group", "list"))
    [group] = doc("group", "describe", "js-group")
    assert group["total_lag"] == 0 and {o["partition"] for o in group["offsets"]} == {0}
    assert doc("txn", "list") == []
    info = doc("cluster", "info")
    assert info["brokers"][0]["port"] == int(broker.bootstrap.rsplit(":", 1)[1])
    assert doc("cluster", "health")["healthy"] is True
