"""Core 0's side of `pstream serve --cores N`: starts the other cores, restarts one that dies,
serves their relays, and tells them what changed.

Each core k > 0 is a child process (member.py) given the broker's settings. It connects to the
control socket, says which addresses its listeners bound, and from then on core 0 sends it, one
JSON line each and waits for its answer line:
- `topology`: every live core's addresses (for Metadata);
- `refresh`: read topics, ACLs, users, quotas and dynamic configs again (after a request that
  changed them, before that request is answered);
- `txn`: a transaction's producer, epoch and partitions, so the partition's core can check a
  transactional batch as core 0's coordinator would (KIP-890's verification);
- `markers`: write a transaction's COMMIT or ABORT markers on its partitions there;
- `metrics`, `partition_stats`: its Prometheus exposition and its partitions' offsets and sizes,
  which core 0's /metrics and admin API merge with its own.
A core that is down gets no `refresh` or `txn`: it reads everything at its start, and markers
for its partitions fail until it is back (the coordinator retries them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pstream
from pstream.log import owner_core

_log = logging.getLogger("pstream.broker")

METADATA_KEY = 3
CALL_TIMEOUT_S = 10.0      # a core that takes longer to answer fails the call (logged; markers are retried)
RESTART_BACKOFF_S = 1.0    # between a core's death and its next start, doubling while it dies young
MAX_RESTART_BACKOFF_S = 30.0
STABLE_AFTER_S = 10.0      # a core that lived this long starts again after the first backoff
STOP_GRACE_S = 30.0        # for the cores to drain and close their logs on stop
CONTROL_LINE_LIMIT = 1 << 28   # one control message (a core's /metrics with many partitions: megabytes)
DIR_PREFIX = "pstream-cores-"   # + core 0's pid: the directory of the control and relay sockets


class _Member:
    """One core > 0: its process, its control connection, and its answers awaited."""

    def __init__(self, core: int):
        self.core = core
        self.process: subprocess.Popen | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.addresses: dict[str, tuple[str, int]] | None = None
        self.calls: dict[int, asyncio.Future] = {}
        self.started_at = 0.0
        self.backoff = RESTART_BACKOFF_S


class CoreSupervisor:
    def __init__(self, broker):
        self.broker = broker
        self.count = broker.config.cores
        self.members = {core: _Member(core) for core in range(1, self.count)}
        _remove_stale_dirs()
        # 0700: the relay trusts whoever connects. Named by pid, so a later start removes it if this
        # process dies without doing so (kill -9).
        self.dir = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
        self.control_path = os.path.join(self.dir, "control.sock")
        self.relay_path = os.path.join(self.dir, "relay.sock")
        self._servers: list = []
        self._watch: asyncio.Task | None = None
        self._next_id = 0
        self._stopping = False

    async def start(self) -> None:
        from pstream.broker.cores.relay import RelayedConnection

        self._check_ports()
        loop = asyncio.get_running_loop()
        self._servers.append(await asyncio.start_unix_server(self._on_member, self.control_path,
                                                             limit=CONTROL_LINE_LIMIT))
        self._servers.append(await loop.create_unix_server(lambda: RelayedConnection(self.broker), self.relay_path))
        for member in self.members.values():
            self._spawn(member)
        self._watch = asyncio.ensure_future(self._watch_processes())

    # --- processes ---------------------------------------------------------------------------

    def _check_ports(self) -> None:
        """Each core's ports (each listener's + k) are free now: a taken one stops the start with
        the address, as core 0's own would, instead of a core that fails and restarts forever."""
        for core in self.members:
            for lis in self.broker.listeners:
                if not lis.port:
                    continue
                port = lis.port + core
                family = socket.AF_INET6 if ":" in lis.host else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind((lis.host, port))
                    except OSError as exc:
                        raise OSError(exc.errno, f"cannot listen on {lis.host}:{port} for core {core} "
                                                 f"(listener {lis.name}'s port + {core}): {exc.strerror}") from None

    def _spawn(self, member: _Member) -> None:
        # The child imports the pstream this process runs, whatever the working directory.
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(pstream.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        member.process = subprocess.Popen(
            [sys.executable, "-P", "-c", "from pstream.broker.cores.member import main; main()"],
            stdin=subprocess.PIPE, env=env, start_new_session=True)   # a terminal's Ctrl-C reaches core 0 alone
        member.started_at = time.monotonic()
        member.process.stdin.write(pickle.dumps((self.broker.static_config, member.core, os.getpid(),
                                                 self.control_path, self.relay_path)))
        member.process.stdin.close()
        _log.info("core %d started (process %d)", member.core, member.process.pid)

    async def _watch_processes(self) -> None:
        """Restarts a core whose process ended; its partitions are offline meanwhile."""
        while True:
            await asyncio.sleep(0.2)
            for member in self.members.values():
                if member.process is None or member.process.poll() is None:
                    continue
                lived = time.monotonic() - member.started_at
                member.backoff = RESTART_BACKOFF_S if lived > STABLE_AFTER_S else \
                    min(member.backoff * 2, MAX_RESTART_BACKOFF_S)
                _log.error("core %d (process %d) exited with code %s after %.1f s; restarting it in %.0f s",
                           member.core, member.process.pid, member.process.returncode, lived, member.backoff)
                member.process = None
                self._forget(member)
                self._publish_topology()
                asyncio.get_running_loop().call_later(member.backoff, self._respawn, member)

    def _respawn(self, member: _Member) -> None:
        if not self._stopping:
            self._spawn(member)

    def _forget(self, member: _Member) -> None:
        member.addresses = None
        if member.writer is not None:
            member.writer.close()
            member.writer = None
        for waiter in member.calls.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"core {member.core} went away"))
        member.calls.clear()

    # --- the control connection -----------------------------------------------------------

    async def _on_member(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        member = None
        try:
            hello = json.loads(await reader.readline())
            member = self.members[hello["core"]]
            if member.writer is not None:   # an older connection of a restarted core
                self._forget(member)
            member.writer = writer
            member.addresses = {name: tuple(address) for name, address in hello["listeners"].items()}
            txns = self.broker.transactions.txns.values() if self.broker.transactions is not None else ()
            for meta in txns:   # what it must know before it answers a transactional batch
                self._send(member, _txn_message(meta))
            self._send(member, {"op": "ready"})
            self._publish_topology()
            _log.info("core %d serving (node %d)", member.core, self.broker.core_map.node_of(member.core))
            while line := await reader.readline():
                answer = json.loads(line)
                waiter = member.calls.pop(answer["id"], None)
                if waiter is not None and not waiter.done():
                    if answer.get("error"):
                        waiter.set_exception(RuntimeError(f"core {member.core}: {answer['error']}"))
                    else:
                        waiter.set_result(answer.get("result"))
        except (ConnectionError, ValueError, KeyError) as exc:
            _log.warning("core control connection: %s", exc)
        finally:
            if member is not None and member.writer is writer:
                self._forget(member)
                self._publish_topology()
            writer.close()

    def _send(self, member: _Member, message: dict) -> None:
        member.writer.write(json.dumps(message).encode() + b"\n")

    async def _call(self, member: _Member, message: dict):
        """Sends a message to a live core and waits for its answer (what it returned)."""
        self._next_id += 1
        message["id"] = self._next_id
        waiter = asyncio.get_running_loop().create_future()
        member.calls[self._next_id] = waiter
        self._send(member, message)
        try:
            return await asyncio.wait_for(waiter, CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            member.calls.pop(message["id"], None)
            raise TimeoutError(f"core {member.core} did not answer {message['op']} in {CALL_TIMEOUT_S:.0f} s") \
                from None

    def _publish_topology(self) -> None:
        addresses = {0: {lis.name: lis.advertised for lis in self.broker.listeners}}
        addresses.update({core: m.addresses for core, m in self.members.items() if m.addresses is not None})
        self.broker.core_map.addresses = addresses
        message = {"op": "topology", "cores": {str(core): by_name for core, by_name in addresses.items()}}
        for member in self.members.values():
            if member.writer is not None and member.addresses is not None:
                self._send(member, message)

    # --- what the other cores are told ------------------------------------------------------

    async def after_change(self, api_key: int, result, topic_changes: int):
        """A request that may have changed topics, ACLs, users or quotas: answered once every
        live core has read them again (a Metadata request only if it created a topic)."""
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            result = await result
        if api_key != METADATA_KEY or self.broker.log.topic_changes != topic_changes:
            await self.ask_live({"op": "refresh"})
        return result

    async def ask_live(self, message: dict) -> dict:
        """{core: its answer} to `message` from every live core other than 0. One that fails is
        logged and left out: a core down reads everything again when it starts."""
        live = [m for m in self.members.values() if m.writer is not None]
        answers = await asyncio.gather(*(self._call(m, dict(message)) for m in live), return_exceptions=True)
        out = {}
        for member, answer in zip(live, answers):
            if isinstance(answer, BaseException):
                _log.warning("core %d: %s failed: %s", member.core, message["op"], answer)
            else:
                out[member.core] = answer
        return out

    async def transaction_changed(self, meta) -> None:
        await self.ask_live(_txn_message(meta))

    async def write_markers(self, producer_id: int, epoch: int, commit: bool, partitions) -> list:
        """Writes the markers of partitions other cores own there; returns the partitions left
        for this core. Raises if a core is down or fails (the coordinator retries)."""
        by_core: dict[int, list] = {}
        for topic, number in partitions:
            by_core.setdefault(owner_core(topic, number, self.count), []).append((topic, number))
        calls = []
        for core, owned in by_core.items():
            if core == 0:
                continue
            member = self.members[core]
            if member.writer is None:
                raise ConnectionError(f"core {core} is down: markers for {owned} wait for it")
            calls.append(self._call(member, {"op": "markers", "producer_id": producer_id, "epoch": epoch,
                                             "commit": commit, "partitions": owned}))
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        return by_core.get(0, [])

    # --- stop -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stops the other cores (each drains and closes its Log) before core 0 stops."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        for server in self._servers:
            server.close()
        running = [m.process for m in self.members.values() if m.process is not None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                _log.error("core process %d did not stop in %.0f s: killed", process.pid, STOP_GRACE_S)
                process.kill()
                process.wait()
        for member in self.members.values():
            self._forget(member)
        shutil.rmtree(self.dir, ignore_errors=True)


def _remove_stale_dirs() -> None:
    """Socket directories of earlier core 0 processes that died without removing theirs."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        pid = name[len(DIR_PREFIX):].split("-", 1)[0] if name.startswith(DIR_PREFIX) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _txn_message(meta) -> dict:
    return {"op": "txn", "transactional_id": meta.transactional_id, "producer_id": meta.producer_id, "epoch": meta.producer_epoch,
            "ongoing": meta.state.name == "ONGOING", "partitions": sorted(meta.partitions)}
