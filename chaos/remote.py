"""A deployment the suite did not make, driven by the commands of a target file.

    python -m chaos.run --target mycluster.toml [--scenario NAME ...]

The file names the cluster (ZooKeeper, cluster name, the timeouts it runs with),
its hosts and the shell commands that kill, start, pause and resume a host (ssh,
systemctl, a cloud CLI: whatever reaches them). ``{host}`` in a command is the
host's address from the file, ``{name}`` its node id. See docs/chaos.md.

Every host a run killed or paused is started or resumed again when the scenario
ends, whatever happened, and the regions it made are deleted: the deployment is
left as it was found.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ecmem

from .target import wait_gone, wait_nodes

log = logging.getLogger("chaos.remote")
COMMANDS = ("kill", "start", "pause", "resume")


class TargetFileError(ValueError):
    pass


@dataclass
class RemoteCluster:
    zk: str
    cluster: str
    root: Path
    nodes: dict[str, str]  # storage node id -> host its commands name
    control: dict[str, str]  # coordinator / ZooKeeper server name -> host
    commands: dict[str, str]
    control_commands: dict[str, str]
    session_timeout: float = 10.0
    grace: float = 60.0
    prefix: str = "chaos-"
    _down: set[str] = field(default_factory=set)
    _paused: set[str] = field(default_factory=set)
    _regions: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path, root: Path, run: str) -> RemoteCluster:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TargetFileError(f"target file {path}: {exc}") from exc
        return cls.from_dict(raw, root, run, str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], root: Path, run: str, where: str) -> RemoteCluster:
        def need(key: str, kind: type) -> Any:
            if not isinstance(raw.get(key), kind):
                raise TargetFileError(f"{where}: '{key}' is missing or not a {kind.__name__}")
            return raw[key]

        commands = need("commands", dict)
        missing = [c for c in COMMANDS if not isinstance(commands.get(c), str)]
        if missing:
            raise TargetFileError(
                f"{where}: [commands] lacks {', '.join(missing)}: each of "
                f"{', '.join(COMMANDS)} is a shell command, {{host}} and {{name}} filled in"
            )
        nodes = need("nodes", dict)
        if len(nodes) < 6:
            raise TargetFileError(
                f"{where}: [nodes] lists {len(nodes)} storage nodes; the scenarios need "
                "at least 6 (ec:4+2 with a host to lose)"
            )
        control = raw.get("control", {})
        control_commands = raw.get("control_commands", {})
        if control and any(not isinstance(control_commands.get(c), str) for c in COMMANDS):
            raise TargetFileError(
                f"{where}: [control] needs [control_commands] with {', '.join(COMMANDS)}"
            )
        root.mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        return cls(
            zk=need("zk", str),
            cluster=need("cluster", str),
            root=root,
            nodes={str(k): str(v) for k, v in nodes.items()},
            control={str(k): str(v) for k, v in control.items()},
            commands=commands,
            control_commands=control_commands,
            session_timeout=float(raw.get("session_timeout", 10.0)),
            grace=float(raw.get("rebuild_grace", 60.0)),
            prefix=f"chaos-{run}-",
        )

    @property
    def node_hosts(self) -> list[str]:
        return sorted(self.nodes)

    @property
    def control_hosts(self) -> list[str]:
        return sorted(self.control)

    def region(self, name: str) -> str:
        full = self.prefix + name
        self._regions.add(full)
        return full

    def _run(self, what: str, name: str) -> None:
        if name in self.nodes:
            template, host = self.commands[what], self.nodes[name]
        elif name in self.control:
            template, host = self.control_commands[what], self.control[name]
        else:
            raise KeyError(f"{name!r} is not a host of the target file")
        cmd = template.format(host=shlex.quote(host), name=shlex.quote(name))
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
        with open(self.root / "logs" / "commands.log", "a") as f:
            f.write(f"$ {cmd}\n{out.stdout}{out.stderr}exit {out.returncode}\n")
        if out.returncode != 0:
            raise RuntimeError(
                f"'{what}' of {name} failed (exit {out.returncode}): {cmd}\n{out.stderr.strip()}"
            )

    def kill(self, host: str) -> None:
        self._run("kill", host)
        self._down.add(host)

    def start(self, host: str) -> None:
        self._run("start", host)
        self._down.discard(host)

    def pause(self, host: str) -> None:
        self._run("pause", host)
        self._paused.add(host)

    def resume(self, host: str) -> None:
        self._run("resume", host)
        self._paused.discard(host)

    def wait_nodes(self, hosts: list[str], timeout: float = 60.0) -> None:
        wait_nodes(self.zk, self.cluster, hosts, timeout)

    def wait_gone(self, hosts: list[str], timeout: float = 30.0) -> None:
        wait_gone(self.zk, self.cluster, hosts, timeout)

    def close(self) -> None:
        """Leave the deployment as it was found: every host back, our regions gone."""
        problems = []
        for host in sorted(self._paused):
            try:
                self.resume(host)
            except Exception as exc:  # go on: the others must come back too
                problems.append(str(exc))
        for host in sorted(self._down):
            try:
                self.start(host)
            except Exception as exc:
                problems.append(str(exc))
        back = [h for h in self.nodes if h not in self._down]
        try:
            self.wait_nodes(back, timeout=120)
            with ecmem.connect(self.zk, cluster=self.cluster, timeout=30) as cl:
                for name in sorted(self._regions):
                    try:
                        cl.delete_region(name)
                    except ecmem.RegionNotFound:
                        pass
        except Exception as exc:
            problems.append(f"cleaning up: {exc}")
        if problems:
            raise RuntimeError("the deployment may need a hand: " + "; ".join(problems))
