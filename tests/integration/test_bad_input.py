"""Bad input over raw sockets, and connection handling under load.

Framing errors (garbage, truncated frames, absurd or oversized lengths, unknown APIs and
versions) close that one connection quickly, with one log line, while the broker and other
connections carry on. Bad content inside a well-framed request gets Kafka's error code in
the response and leaves the connection open. Idle connections are closed after
connections.max.idle.ms; a thousand connections are served at once; pipelined requests are
answered in order.
"""

from __future__ import annotations

import re
import resource
import socket
import struct
import time
import uuid

import pytest

import pstream
from pstream.protocol.error_codes import ErrorCode


import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)
codecs = raw_kafka.codecs
_i32 = struct.Struct(">i")
CLOSING = re.compile(r"WARNING pstream\.broker: [0-9.:]+: closing the connection: (.*)")
CLOSE_WITHIN = 5.0   # seconds: a framing error closes the connection well within this


def api_versions_request():
    return codecs("ApiVersions")[0](client_software_name="pstream-tests", client_software_version="1.0")


def closing_lines(broker) -> list[str]:
    return CLOSING.findall(broker.output())


def wait_for_closing_lines(broker, count: int, timeout: float = 5.0) -> list[str]:
    """The broker's 'closing the connection' reasons, once there are `count` of them (log lines
    are written by the broker process, so they may land a moment after the socket closes)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = closing_lines(broker)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def assert_still_serving(broker, conn) -> None:
    """The broker is alive and answers Metadata on an already-open connection and on a new one."""
    assert broker.alive(), broker.output()
    assert conn.call("Metadata", 12, raw_kafka.metadata_request(None)).brokers[0].node_id == 0
    with raw_kafka.RawConnection(broker.bootstrap) as fresh:
        assert fresh.call("Metadata", 1, raw_kafka.metadata_request(None, version=1)).controller_id == 0


def create_topic(conn, name, partitions=1, configs=None):
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (partitions, -1, configs or {})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]
    return resp.topics[0].topic_id


def produce(conn, topic, partition, records, acks=-1, version=11):
    return conn.call("Produce", version, raw_kafka.produce_request(topic, partition, records, acks)) \
        .responses[0].partition_responses[0]


def batch_of(count=1, value_bytes=10) -> bytes:
    return pstream._core.encode_batch([(None, b"v" * value_bytes, [], None) for _ in range(count)])


# --- framing errors: the connection is closed, one log line, everything else carries on ---------

_METADATA = raw_kafka.encode_request("Metadata", 12, 9, raw_kafka.metadata_request(["one", "two"]))

FRAMING_CASES = {
    # name: (bytes sent, the reason the broker logs)
    "http-request": (b"GET / HTTP/1.1\r\nHost: kafka\r\n\r\n", r"frame of 1195725856 bytes"),
    "random-garbage": (_i32.pack(12) + bytes.fromhex("deadbeef") * 3, r"unknown API key"),
    "header-cut-short": (raw_kafka.frame(b"\x00\x03\x00"), r"unreadable request header"),
    "client-id-longer-than-frame": (raw_kafka.frame(b"\x00\x03\x00\x01\x00\x00\x00\x01\x7f\xff"),
                                    r"unreadable request header"),
    "body-cut-short": (raw_kafka.frame(_METADATA[4:-5]), r"malformed Metadata v12 request"),
    "length-int32-max": (_i32.pack(2**31 - 1) + b"\x00" * 16, r"frame of 2147483647 bytes"),
    "length-negative": (_i32.pack(-1) + b"\x00" * 16, r"frame of -1 bytes"),
    "length-int32-min": (_i32.pack(-2**31), r"frame of -2147483648 bytes"),
    "length-zero": (_i32.pack(0), r"frame of 0 bytes"),
    "unknown-api-key": (raw_kafka.frame(raw_kafka.request_header(999, 0, 5, "x", flexible=False)),
                        r"unknown API key 999 \(correlation id 5\)"),
    "api-key-pstream-lacks": (raw_kafka.frame(raw_kafka.request_header(57, 0, 6, "x", flexible=False)),
                              r"unknown API key 57"),   # UpdateFeatures: Kafka has it, pstream does not
    "unknown-version-of-metadata": (raw_kafka.frame(raw_kafka.request_header(3, 99, 7, "x", flexible=True)
                                                    + b"\x01\x01\x00\x00\x00"), r"Metadata v99 is not supported"),
    "version-past-max-of-produce": (raw_kafka.frame(raw_kafka.request_header(0, 12, 8, "x", flexible=True)),
                                    r"Produce v12 is not supported"),
    "negative-version": (raw_kafka.frame(raw_kafka.request_header(3, -1, 8, "x", flexible=False)),
                         r"Metadata v-1 is not supported"),
}


@pytest.mark.parametrize("case", sorted(FRAMING_CASES))
def test_framing_error_closes_only_that_connection_with_one_log_line(broker, case):
    data, reason = FRAMING_CASES[case]
    with raw_kafka.RawConnection(broker.bootstrap) as bystander, raw_kafka.RawConnection(broker.bootstrap) as bad:
        assert bystander.call("ApiVersions", 3, api_versions_request()).error_code == 0
        started = time.monotonic()
        bad.send_raw(data)
        assert bad.closed_by_broker(CLOSE_WITHIN), f"{case}: the broker kept the connection open"
        assert time.monotonic() - started < CLOSE_WITHIN
        lines = wait_for_closing_lines(broker, 1)
        assert len(lines) == 1, lines
        assert re.search(reason, lines[0]), lines
        assert_still_serving(broker, bystander)
    assert len(closing_lines(broker)) == 1


def test_request_over_socket_request_max_bytes_closes_the_connection(broker_factory):
    limit = 2000
    broker = broker_factory("--socket-request-max-bytes", str(limit), "--no-auto-create-topics")
    with raw_kafka.RawConnection(broker.bootstrap) as bystander, raw_kafka.RawConnection(broker.bootstrap) as conn:
        # A request of exactly the limit is served...
        req = raw_kafka.metadata_request([f"t{i}" for i in range(8)], version=4, allow_auto_topic_creation=False)
        while len(raw_kafka.encode_request("Metadata", 4, 1, req)) < 4 + limit:   # names grow to fill it
            min(req.topics, key=lambda t: len(t.name)).name += "u"
        exact = raw_kafka.encode_request("Metadata", 4, 1, req)
        assert len(exact) == 4 + limit
        conn.send_raw(exact)
        cid, resp = conn.receive("Metadata", 4)
        assert cid == 1 and all(t.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for t in resp.topics)
        # ...one byte more closes the connection, before the broker reads the body.
        req.topics[-1].name += "u"
        conn.send_raw(raw_kafka.encode_request("Metadata", 4, 2, req)[:100])
        assert conn.closed_by_broker(CLOSE_WITHIN)
        lines = wait_for_closing_lines(broker, 1)
        assert len(lines) == 1 and f"frame of {limit + 1} bytes (the limit is {limit}" in lines[0], lines
        assert_still_serving(broker, bystander)


def test_truncated_frame_then_client_close_leaves_the_broker_serving(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as bystander:
        for _ in range(3):
            with raw_kafka.RawConnection(broker.bootstrap) as conn:
                conn.send_raw(_i32.pack(100) + b"\x00\x03\x00\x0c" + b"\x00" * 6)   # 10 of 100 bytes
        big = raw_kafka.RawConnection(broker.bootstrap)    # a large frame in progress (its own buffer)
        big.send_raw(_i32.pack(5_000_000) + b"\x00" * 100_000)
        big.close()
        assert_still_serving(broker, bystander)
    assert "Traceback" not in broker.output()


def test_truncated_frame_then_half_close_is_closed_by_the_broker(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as bystander, raw_kafka.RawConnection(broker.bootstrap) as conn:
        conn.send_raw(_i32.pack(100) + b"\x00" * 10)
        conn.sock.shutdown(socket.SHUT_WR)   # EOF after 10 of the 100 bytes announced
        assert conn.closed_by_broker(CLOSE_WITHIN)
        assert_still_serving(broker, bystander)


def test_truncated_frame_then_half_close_is_logged(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        conn.send_raw(_i32.pack(100) + b"\x00" * 10)
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.closed_by_broker(CLOSE_WITHIN)
    assert len(wait_for_closing_lines(broker, 1, timeout=1.0)) == 1


def test_truncated_frame_left_hanging_is_closed_after_connections_max_idle_ms(broker_factory):
    broker = broker_factory("--connections-max-idle-ms", "500")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        conn.send_raw(_i32.pack(100) + b"\x00" * 10)   # never finished
        assert conn.closed_by_broker(CLOSE_WITHIN)
    assert any("idle" in line for line in wait_for_closing_lines(broker, 1))


# --- bad content in a well-framed request: Kafka's error code, the connection stays -----------------

def test_batch_with_a_bad_crc_is_corrupt_message(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "crc")
        batch = bytearray(batch_of(3))
        batch[-1] ^= 0xFF   # a record byte: covered by the CRC
        part = produce(conn, "crc", 0, bytes(batch))
        assert (part.error_code, part.base_offset) == (ErrorCode.CORRUPT_MESSAGE, -1)
        assert produce(conn, "crc", 0, batch_of(3)).base_offset == 0   # nothing of it was written
        assert_still_serving(broker, conn)


@pytest.mark.parametrize("damage", ["trailing-bytes", "length-past-the-end", "empty"])
def test_records_that_do_not_frame_batches_are_corrupt_message(broker, damage):
    batch = batch_of(2)
    records = {"trailing-bytes": batch + b"\x00" * 20,
               "length-past-the-end": batch[:8] + _i32.pack(len(batch) + 100) + batch[12:],
               "empty": b""}[damage]
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "frames")
        assert produce(conn, "frames", 0, records).error_code == ErrorCode.CORRUPT_MESSAGE
        assert produce(conn, "frames", 0, batch).base_offset == 0
        assert_still_serving(broker, conn)


def test_batch_with_magic_1_is_invalid_record(broker):
    batch = bytearray(batch_of(1))
    batch[16] = 1   # magic
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "magic")
        assert produce(conn, "magic", 0, bytes(batch)).error_code == ErrorCode.INVALID_RECORD
        assert_still_serving(broker, conn)


def test_zstd_batch_before_produce_v7_is_unsupported_compression_type(broker):
    zstd = pstream._core.encode_batch([(None, b"z" * 100, [], None)], compression=4)
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "zstd")
        for version, expected in ((6, ErrorCode.UNSUPPORTED_COMPRESSION_TYPE), (7, 0)):
            resp = conn.call("Produce", version, raw_kafka.produce_request("zstd", 0, zstd))
            assert resp.responses[0].partition_responses[0].error_code == expected
        assert_still_serving(broker, conn)


def test_batch_over_max_message_bytes_is_message_too_large(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "limited", configs={"max.message.bytes": "1000"})
        create_topic(conn, "defaults")
        assert produce(conn, "limited", 0, batch_of(1, 2000)).error_code == ErrorCode.MESSAGE_TOO_LARGE
        assert produce(conn, "limited", 0, batch_of(1, 500)).error_code == 0
        # The broker-wide message.max.bytes (1048588) applies to topics without their own.
        part = produce(conn, "defaults", 0, batch_of(1, 1_100_000))
        assert part.error_code == ErrorCode.MESSAGE_TOO_LARGE
        assert produce(conn, "defaults", 0, batch_of(1, 1_000_000)).error_code == 0
        assert_still_serving(broker, conn)


def test_produce_to_an_unknown_topic_or_partition_is_unknown_topic_or_partition(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "two", partitions=2)
        assert produce(conn, "nowhere", 0, batch_of()).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert produce(conn, "two", 2, batch_of()).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert produce(conn, "two", -1, batch_of()).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert produce(conn, "bad name!", 0, batch_of()).error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        # Produce never creates topics (Kafka's clients create them through Metadata).
        assert [t.name for t in conn.call("Metadata", 12, raw_kafka.metadata_request(None)).topics] == ["two"]
        assert_still_serving(broker, conn)


def test_fetch_of_an_unknown_topic_or_partition_is_unknown_topic_or_partition(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "one")
        for topic, partition in (("nowhere", 0), ("one", 1)):
            part = conn.call("Fetch", 12, raw_kafka.fetch_request(topic, partition, 0)).responses[0].partitions[0]
            assert part.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, (topic, partition)
        assert_still_serving(broker, conn)


@pytest.mark.parametrize("version", [13, 17])
def test_fetch_by_an_unknown_topic_id_is_unknown_topic_id(broker, version):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "known")
        stranger = uuid.uuid4()
        resp = conn.call("Fetch", version, raw_kafka.fetch_request("", 0, 0, topic_id=stranger))
        [topic] = resp.responses
        assert topic.topic_id == stranger
        assert topic.partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
        assert_still_serving(broker, conn)


def test_fetch_past_the_end_is_offset_out_of_range(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "short")
        assert produce(conn, "short", 0, batch_of(5)).error_code == 0
        at_end = conn.call("Fetch", 12, raw_kafka.fetch_request("short", 0, 5)).responses[0].partitions[0]
        assert (at_end.error_code, at_end.high_watermark, bytes(at_end.records)) == (0, 5, b"")
        for offset in (6, 1000, -1):
            part = conn.call("Fetch", 12, raw_kafka.fetch_request("short", 0, offset)).responses[0].partitions[0]
            assert (part.error_code, part.high_watermark) == (ErrorCode.OFFSET_OUT_OF_RANGE, 5), offset
        assert_still_serving(broker, conn)


@pytest.mark.parametrize("acks", [2, -2, 100])
def test_produce_with_invalid_acks_is_invalid_required_acks(broker, acks):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "acks")
        part = produce(conn, "acks", 0, batch_of(), acks=acks)
        assert part.error_code == ErrorCode.INVALID_REQUIRED_ACKS
        assert produce(conn, "acks", 0, batch_of()).base_offset == 0   # nothing was written
        assert_still_serving(broker, conn)


# --- connections ------------------------------------------------------------------------------------

def test_idle_connections_are_closed_after_connections_max_idle_ms(broker_factory):
    broker = broker_factory("--connections-max-idle-ms", "500")
    idle = raw_kafka.RawConnection(broker.bootstrap)
    used = raw_kafka.RawConnection(broker.bootstrap)
    try:
        assert used.call("ApiVersions", 3, api_versions_request()).error_code == 0
        started = time.monotonic()
        # The busy connection stays open past the idle limit while it keeps sending requests.
        while time.monotonic() - started < 1.5:
            assert used.call("Metadata", 12, raw_kafka.metadata_request(None)).controller_id == 0
            time.sleep(0.1)
        assert idle.closed_by_broker(timeout=0.1)   # long gone by now
        assert not used.closed_by_broker(timeout=0.1)
        assert used.closed_by_broker(timeout=CLOSE_WITHIN)   # once it stops, it goes too
        lines = wait_for_closing_lines(broker, 2)
        assert len(lines) == 2 and all("idle for more than connections.max.idle.ms (500)" in x for x in lines), lines
    finally:
        idle.close()
        used.close()


def test_max_connections_refuses_connections_past_the_limit(broker_factory):
    broker = broker_factory("--max-connections", "5")
    conns = [raw_kafka.RawConnection(broker.bootstrap) for _ in range(5)]
    try:
        for conn in conns:
            assert conn.call("ApiVersions", 3, api_versions_request()).error_code == 0
        with raw_kafka.RawConnection(broker.bootstrap) as extra:
            assert extra.closed_by_broker(CLOSE_WITHIN)
        lines = wait_for_closing_lines(broker, 1)
        assert len(lines) == 1 and "max.connections" in lines[0]
        conns.pop().close()   # room again: the next one is served
        deadline = time.monotonic() + CLOSE_WITHIN
        while True:
            with raw_kafka.RawConnection(broker.bootstrap) as again:
                try:
                    assert again.call("ApiVersions", 3, api_versions_request()).error_code == 0
                    break
                except (ConnectionError, OSError):
                    if time.monotonic() > deadline:   # the broker may see the close a moment later
                        raise
                    time.sleep(0.05)
    finally:
        for conn in conns:
            conn.close()


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_a_thousand_concurrent_connections_are_all_answered(broker):
    count = 1000
    _raise_fd_limit(count + 200)
    request = raw_kafka.encode_request("ApiVersions", 3, 0, codecs("ApiVersions")[0](
        client_software_name="many", client_software_version="1"))
    conns = []
    try:
        for _ in range(count):
            conns.append(raw_kafka.RawConnection(broker.bootstrap, timeout=30))
        for i, conn in enumerate(conns):   # every connection open at once, each with a request in flight
            conn.send_raw(request[:8] + _i32.pack(i) + request[12:])
        for i, conn in enumerate(conns):
            cid, resp = conn.receive("ApiVersions", 3, timeout=30)
            assert (cid, resp.error_code) == (i, 0)
        # All still open and served: a second round on each.
        for i, conn in enumerate(conns):
            conn.send_raw(request[:8] + _i32.pack(count + i) + request[12:])
        for i, conn in enumerate(conns):
            assert conn.receive("ApiVersions", 3, timeout=30)[0] == count + i
        assert closing_lines(broker) == []
        assert "Too many open files" not in broker.output()
    finally:
        for conn in conns:
            conn.close()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert conn.call("Metadata", 12, raw_kafka.metadata_request(None)).controller_id == 0


def test_fifty_pipelined_requests_are_answered_in_request_order(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "pipe", partitions=3)   # partition 2 stays empty: fetches of it long-poll
        plan = []   # (api, version, request, answered)
        for i in range(50):
            kind = i % 5
            if kind == 0:
                plan.append(("Produce", 11, raw_kafka.produce_request("pipe", i % 2, batch_of(2)), True))
            elif kind == 1:   # a long poll at the end of the log: answered at max_wait_ms, after later requests
                plan.append(("Fetch", 12, raw_kafka.fetch_request("pipe", 2, 0, max_wait_ms=50), True))
            elif kind == 2:
                plan.append(("Metadata", 12, raw_kafka.metadata_request(["pipe"]), True))
            elif kind == 3:
                plan.append(("ListOffsets", 9, raw_kafka.list_offsets_request("pipe", 0, -1), True))
            else:
                plan.append(("ApiVersions", 3, api_versions_request(), True))
        plan[27] = ("Produce", 11, raw_kafka.produce_request("pipe", 0, batch_of(1), acks=0), False)   # no answer
        frames = b"".join(raw_kafka.encode_request(api, v, cid, req) for cid, (api, v, req, _) in enumerate(plan, 1))
        conn.send_raw(frames)   # all fifty before reading anything
        answered = [(cid, api, v) for cid, (api, v, _, expect) in enumerate(plan, 1) if expect]
        offsets = {0: [], 1: []}
        for cid, api, version in answered:
            got, resp = conn.receive(api, version, timeout=30)
            assert got == cid, f"answer {got} where {cid} ({api}) was next"
            if api == "Produce":
                part = resp.responses[0].partition_responses[0]
                assert part.error_code == 0
                offsets[part.index].append(part.base_offset)
            elif api == "Fetch":
                part = resp.responses[0].partitions[0]
                assert (part.error_code, bytes(part.records)) == (0, b"")
        # Appends happened in request order too (the acks=0 batch went in at 6 on partition 0).
        assert offsets == {0: [0, 2, 4, 7, 9], 1: [0, 2, 4, 6, 8]}
        assert conn.call("ListOffsets", 9, raw_kafka.list_offsets_request("pipe", 0, -1)).topics[0] \
            .partitions[0].offset == 11   # five batches of two, plus the acks=0 one
