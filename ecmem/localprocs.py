"""Processes of a local cluster: free ports, liveness by pid and command line, and
starting a ZooKeeper server that answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from .errors import ClusterError

ZK_JAR = "/usr/share/java/zookeeper.jar"
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
ZK_CONF = """tickTime=500
initLimit=10
syncLimit=5
dataDir={data}
clientPort={port}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
minSessionTimeout=1000
maxSessionTimeout=30000
"""
ZK_ATTEMPTS = 5  # a real server may exit at start too (its port taken meanwhile)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def zk_ok(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False


def alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and its command line holds ``marker`` (so it is ours)."""
    if pid <= 0:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return marker in " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop(pid: int, marker: str, grace: float = 5.0) -> bool:
    return bool(stop_all([(pid, marker)], grace))


def stop_all(procs: list[tuple[int, str]], grace: float = 5.0) -> list[int]:
    """SIGTERM each of ``procs`` (pid, marker) that is alive and ours, all at once (each
    takes a second or two to shut down), SIGKILL those still up after ``grace`` s;
    returns the pids stopped."""
    mine: list[psutil.Process] = []
    for pid, marker in procs:
        if alive(pid, marker):
            try:
                p = psutil.Process(pid)
                p.terminate()
                mine.append(p)
            except psutil.NoSuchProcess:
                pass
    _, left = psutil.wait_procs(mine, timeout=grace)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(left, timeout=grace)
    return [p.pid for p in mine]


def tail(log: Path, start: int) -> str:
    """What ``log`` gained after byte ``start``."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"(cannot read the log: {e})"


def launch_zookeeper(
    zdir: Path, logs: Path, spawn: Callable[[list[str], str], int]
) -> tuple[int, int]:
    """Start ZooKeeper with its config in ``zdir``; (pid, port) once it answers.

    A free port can be taken by someone else between choosing it and ZooKeeper binding
    it, so a server that exits at start is tried again on another port; the last
    failure names the end of its log."""
    if not Path(ZK_JAR).exists():
        raise ClusterError(
            f"ZooKeeper is not installed ({ZK_JAR} missing): run 'make setup', "
            "or 'apt-get install zookeeper'"
        )
    java = shutil.which("java")
    if java is None:
        raise ClusterError("java is not installed: run 'make setup' (it installs zookeeper)")
    conf = zdir / "zoo.cfg"
    log = logs / "zookeeper.log"
    mark = 0
    why: list[str] = []
    for _ in range(ZK_ATTEMPTS):
        port = free_port()
        conf.write_text(ZK_CONF.format(data=zdir / "data", port=port))
        mark = log.stat().st_size if log.exists() else 0
        cmd = [java, "-Xmx512m", f"-Dzookeeper.log.dir={logs}", "-cp"]
        cmd += [f"/etc/zookeeper/conf:{ZK_JAR}", ZK_MAIN, str(conf)]
        pid = spawn(cmd, log.name)
        failed = _answers(pid, port, str(conf), log)
        if failed is None:
            return pid, port
        why.append(f"port {port}: {failed}")
    raise ClusterError(
        f"ZooKeeper exited at start {ZK_ATTEMPTS} times ({'; '.join(why)}); "
        f"the end of {log}:\n{tail(log, mark)[-2000:]}"
    )


def _answers(pid: int, port: int, marker: str, log: Path) -> str | None:
    """None once our server answers on ``port``, else why it does not."""
    deadline = time.monotonic() + 30
    while not zk_ok(port):
        if not alive(pid, marker):
            return f"the server exited before answering ({_exit_code(pid)})"
        if time.monotonic() > deadline:
            raise ClusterError(f"ZooKeeper did not answer within 30s; see {log}")
        time.sleep(0.2)
    # Another server may take the port while ours exits for want of it: the listener
    # must be our process.
    if _listens(pid, port):
        return None
    if alive(pid, marker):
        return f"another process answers on it while ours (pid {pid}) runs"
    return f"another process answers on it and ours exited ({_exit_code(pid)})"


def _listens(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


def _exit_code(pid: int) -> str:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "exit status unknown"
    return f"exit status {os.waitstatus_to_exitcode(status)}" if done else "still exiting"
