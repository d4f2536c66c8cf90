"""ecmem mount / umount: the FUSE file system of a cluster's regions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import psutil

from ecmem.errors import ConfigError, EcmemError, InvalidNameError
from ecmem.names import validate_name
from ecmem.target import resolve

from .output import cluster_options, emit, handle_errors, json_option, warn_if_no_redundancy

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0  # the daemon commits files still open before it exits


def _record(mountpoint: str) -> Path:
    """Where ``ecmem mount`` notes the daemon serving a mount point."""
    key = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:12]
    return Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "ecmem-mounts" / f"{key}.json"


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--policy", default="ec:4+2", show_default=True, help="policy of new files")
@click.option("--prefix", default="", help="show only regions under this name (a subtree)")
@click.option("--foreground", is_flag=True, help="serve in this process until unmounted")
@click.option("--log-file", default=None, help="daemon log (default: in the state directory)")
@cluster_options
@json_option
@handle_errors
def mount(
    mountpoint: str,
    policy: str,
    prefix: str,
    foreground: bool,
    log_file: str | None,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Mount the cluster's regions at MOUNTPOINT: directories are name prefixes, files
    are regions. Returns once the mount serves (unless --foreground)."""
    from ecmem.policy import parse_policy

    parse_policy(policy)
    warn_if_no_redundancy(policy)
    if prefix.strip("/"):
        try:
            validate_name(prefix.strip("/"))
        except InvalidNameError as exc:
            raise ConfigError(
                f"--prefix {prefix!r} is not a region name prefix ({exc}); give parts joined "
                "by single slashes, e.g. --prefix ckpt/job42"
            ) from None
    mp = os.path.abspath(mountpoint)
    if not os.path.isdir(mp):
        raise ConfigError(f"mount point {mp} is not a directory: create it first (mkdir -p {mp})")
    if os.path.ismount(mp):
        raise ConfigError(f"{mp} is a mount point already: 'ecmem umount {mp}' first")
    if not os.path.exists("/dev/fuse"):
        raise ConfigError("/dev/fuse is missing: load the fuse module (modprobe fuse)")
    target = resolve(zk, cluster, state_dir)
    args = [
        sys.executable,
        "-m",
        "ecmem.mount",
        mp,
        "--zk",
        target.zk,
        "--cluster",
        target.cluster,
        "--policy",
        policy,
    ]
    if prefix:
        args += ["--prefix", prefix.strip("/")]
    if foreground:
        os.execv(sys.executable, args)
    logs = Path(log_file) if log_file else Path(state_dir) / "logs" / f"mount-{_slug(mp)}.log"
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.ismount(mp):
        if proc.poll() is not None:
            tail = logs.read_text(errors="replace").strip().splitlines()[-3:]
            raise EcmemError(f"the mount of {mp} failed: {' / '.join(tail)} (log: {logs})")
        if time.monotonic() > deadline:
            proc.terminate()
            raise EcmemError(
                f"the mount of {mp} did not come up in {START_TIMEOUT:.0f}s; see {logs}"
            )
        time.sleep(0.05)
    record = _record(mp)
    record.parent.mkdir(parents=True, exist_ok=True)
    info = {"mountpoint": mp, "pid": proc.pid, "log": str(logs), "cluster": target.cluster}
    record.write_text(json.dumps(info))
    emit(
        as_json,
        info,
        f"mounted cluster {target.cluster!r} at {mp} (pid {proc.pid}, log {logs}); "
        f"'ecmem umount {mp}' to unmount",
    )


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "_") or "root"


def _users(mp: str) -> list[str]:
    """Processes with a file, or their working directory, on the mount: "pid (name)"."""
    inside = mp.rstrip("/") + "/"
    found: list[str] = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            paths = [f.path for f in proc.open_files()]
            paths.append(proc.cwd())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if any(p == mp or p.startswith(inside) for p in paths):
            found.append(f"{proc.info['pid']} ({proc.info['name']})")
    return found


def _unmount(mp: str) -> tuple[bool, str]:
    """One try at unmounting: (done, why not)."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    cmd = [tool, "-u", mp] if tool else ["umount", mp]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return out.returncode == 0, out.stderr.strip() or out.stdout.strip()


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--wait",
    "wait",
    type=float,
    default=30.0,
    show_default=True,
    help="seconds to wait for files open on the mount to be closed (0: fail at once if any is)",
)
@json_option
@handle_errors
def umount(mountpoint: str, wait: float, as_json: bool) -> None:
    """Unmount MOUNTPOINT. Files or directories on it still in use block an unmount: it
    waits up to --wait seconds for them to be closed, saying which processes hold them,
    then fails. Once unmounted it waits for the mount's daemon to commit what the files
    wrote and exit."""
    mp = os.path.abspath(mountpoint)
    if not os.path.ismount(mp):
        raise ConfigError(f"{mp} is not mounted")
    deadline = time.monotonic() + max(wait, 0.0)
    told = False
    while True:
        done, why = _unmount(mp)
        if done:
            break
        if "busy" not in why.lower():
            raise EcmemError(f"cannot unmount {mp}: {why}")
        users = _users(mp)
        held = f" by {', '.join(users)}" if users else ""
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:.0f}s" if wait > 0 else ""
            raise EcmemError(
                f"{mp} is busy{waited}: files or directories on it are in use{held}; close "
                f"them (find them with 'fuser -vm {mp}') and run 'ecmem umount {mp}' again"
                + ("" if wait > 0 else ", or pass --wait SECONDS to wait for them")
            )
        if not told and not as_json:
            click.echo(
                f"{mp} is in use{held}: waiting up to {wait:.0f}s for it to be closed",
                err=True,
            )
            told = True
        time.sleep(0.2)
    record = _record(mp)
    pid = 0
    try:
        pid = int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid and psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    record.unlink(missing_ok=True)
    emit(as_json, {"mountpoint": mp, "pid": pid}, f"unmounted {mp}")
