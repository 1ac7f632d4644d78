"""Network namespaces for the cluster's fault tests: one per broker, each with an address of its
own on a bridge the test creates, so a broker's link can be cut (both ways: clients, peers and
etcd) while its process runs. Needs root and iproute2; everything made is removed on close.

    bridge psb<tag>  10.<a>.<b>.1/24  (the test's own address: clients and etcd)
    namespace ps<tag>-<n>  veth psp<tag><n>  10.<a>.<b>.<10+n>/24, bridged by psv<tag><n>
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid


def ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode:
        raise OSError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's ip"
    return None


class Network:
    def __init__(self, size: int):
        tag = uuid.uuid4().hex[:5]
        self.tag = tag
        octets = int(tag, 16)
        self.subnet = f"10.{200 + octets % 50}.{(octets >> 8) % 250}"
        self.bridge = f"psb{tag}"
        self.gateway = f"{self.subnet}.1"
        self.nodes = list(range(1, size + 1))
        self.made: list[str] = []
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            self.made.append("bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for n in self.nodes:
                ns, outside, inside = self.namespace(n), self.outside(n), f"psp{tag}{n}"
                ip("netns", "add", ns)
                self.made.append(ns)
                ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                ip("link", "set", inside, "netns", ns)
                ip("link", "set", outside, "master", self.bridge, "up")
                ip("-n", ns, "addr", "add", f"{self.address(n)}/24", "dev", inside)
                ip("-n", ns, "link", "set", inside, "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def namespace(self, n: int) -> str:
        return f"ps{self.tag}-{n}"

    def outside(self, n: int) -> str:
        return f"psv{self.tag}{n}"

    def address(self, n: int) -> str:
        return f"{self.subnet}.{10 + n}"

    def placement(self, n: int) -> dict:
        """BrokerProcess's host and prefix for broker n."""
        return {"host": self.address(n), "prefix": ("ip", "netns", "exec", self.namespace(n))}

    def cut(self, n: int) -> None:
        """Broker n hears from no one and reaches no one (its process keeps running)."""
        ip("link", "set", self.outside(n), "down")

    def heal(self, n: int) -> None:
        ip("link", "set", self.outside(n), "up")

    def close(self) -> None:
        for made in reversed(self.made):
            try:
                if made == "bridge":
                    ip("link", "del", self.bridge)
                else:
                    ip("netns", "del", made)   # its veth pair goes with it
            except OSError:
                pass
        self.made.clear()
