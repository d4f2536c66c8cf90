"""Hosts in network namespaces on one bridge: how the chaos suite makes a cluster of
several machines on one, and cuts links between them.

Every host gets a namespace with one veth to the bridge and its own address in
10.<subnet>.0.0/24; the root namespace is on the bridge at .1 (where the test's
own clients run). A host is isolated by setting its link down, and a partition
between two hosts is a pair of blackhole routes (this kernel has no netem or
netfilter). Everything a Net made carries its run's id, which encodes the id of
the process that owns it: ``close`` removes a run's own, and ``sweep`` removes
only what runs whose owner is gone left behind, so concurrent runs (a ``make
test`` beside a ``make chaos``) leave each other alone.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence

import psutil

PREFIX = "ecm"  # namespaces and links of the chaos suite all start with it
RUN_LEN = 5  # a run id: its owner's pid in base 36 (pids stay below 36**5)
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def run_id(pid: int | None = None) -> str:
    """The run id of the process ``pid`` (default: this one)."""
    n = os.getpid() if pid is None else pid
    out = ""
    for _ in range(RUN_LEN):
        n, d = divmod(n, 36)
        out = DIGITS[d] + out
    return out


def owner(name: str) -> int | None:
    """The pid that owns a namespace or link of the chaos suite; None if not ours."""
    if not name.startswith(PREFIX) or len(name) < len(PREFIX) + RUN_LEN:
        return None
    run = name[len(PREFIX) : len(PREFIX) + RUN_LEN]
    if any(ch not in DIGITS for ch in run):
        return None
    return int(run, 36)


def free_subnet() -> int:
    """A 10.<n>.0.0/24 no interface here uses yet, for a new run's bridge."""
    used = {int(m) for m in re.findall(r"inet 10\.(\d+)\.", ip("-o", "addr", "show").stdout)}
    for n in range(64, 254):
        if n not in used:
            return n
    raise RuntimeError("no free 10.<n>.0.0/24 subnet for a chaos run's bridge")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


class Net:
    def __init__(self, run: str, subnet: int) -> None:
        if owner(f"{PREFIX}{run}") is None or len(run) != RUN_LEN:
            raise ValueError(f"run id {run!r}: {RUN_LEN} of 0-9a-z, as run_id() makes")
        if not 1 <= subnet <= 254:
            raise ValueError(f"subnet {subnet} must be 1..254")
        self.run = run
        self.subnet = subnet
        self.bridge = f"{PREFIX}{run}br"
        self.hosts: dict[str, str] = {}  # host -> address
        self._links: dict[str, str] = {}  # host -> root-side veth
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        return f"10.{self.subnet}.0.1"

    def ns(self, host: str) -> str:
        return f"{PREFIX}{self.run}-{host}"

    def add(self, host: str, number: int) -> str:
        """A host with address 10.<subnet>.0.<number>; returns the address."""
        if not 2 <= number <= 254:
            raise ValueError(f"host number {number} must be 2..254")
        ns, outside, inside = (
            self.ns(host),
            f"{PREFIX}{self.run}{number}",
            f"{PREFIX}{self.run}{number}p",
        )
        address = f"10.{self.subnet}.0.{number}"
        ip("netns", "add", ns)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[host] = address
        self._links[host] = outside
        return address

    def command(self, host: str, args: Sequence[str]) -> list[str]:
        """``args`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host), *args]

    def isolate(self, host: str) -> None:
        ip("link", "set", self._links[host], "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self._links[host], "up")

    def cut(self, a: str, b: str) -> None:
        """No packets between hosts a and b (both ways); others unaffected."""
        ip("-n", self.ns(a), "route", "add", "blackhole", f"{self.hosts[b]}/32")
        ip("-n", self.ns(b), "route", "add", "blackhole", f"{self.hosts[a]}/32")

    def mend(self, a: str, b: str) -> None:
        ip("-n", self.ns(a), "route", "del", "blackhole", f"{self.hosts[b]}/32", check=False)
        ip("-n", self.ns(b), "route", "del", "blackhole", f"{self.hosts[a]}/32", check=False)

    def close(self) -> None:
        for host in list(self.hosts):
            ip("link", "del", self._links[host], check=False)
            ip("netns", "del", self.ns(host), check=False)
        ip("link", "del", self.bridge, check=False)
        self.hosts.clear()
        self._links.clear()


def leftovers(run: str | None = None) -> list[str]:
    """Namespaces and links of the chaos suite that exist now (of one run, if given)."""
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in ip("-o", "link", "show").stdout.splitlines()
        if ":" in line
    ]
    mine = PREFIX + (run or "")
    return [n for n in names + links if n.startswith(mine)]


def sweep() -> list[str]:
    """Remove the namespaces and links of runs whose owner is gone (crashed runs')."""
    gone = []
    for name in leftovers():
        pid = owner(name)
        if pid is None or not psutil.pid_exists(pid):
            gone.append(name)
    for name in gone:
        ip("netns", "del", name, check=False)
        ip("link", "del", name, check=False)
    return gone
