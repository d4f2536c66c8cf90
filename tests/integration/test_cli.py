"""The ecmem command line, run as a user runs it, on a cluster it starts itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def ecmem(
    state: Path, *args: str, stdin: bytes | None = None, **env_vars: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECMEM_")}
    env["ECMEM_STATE_DIR"] = str(state)
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-m", "ecmem.cli.main", *args],
        env=env,
        capture_output=True,
        input=stdin,
        timeout=120,
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local cluster of four 256 MiB nodes started with 'ecmem up'; its state dir."""
    state = tmp_path_factory.mktemp("small") / "state"
    r = ecmem(state, "up", "--nodes", "4", "--capacity", "256MiB", "--no-persist")
    try:
        assert r.returncode == 0, r.stderr.decode()
        yield state
    finally:
        ecmem(state, "down")


def test_stale_ecmem_zk_is_named(small: Path, tmp_path: Path) -> None:
    dead = "127.0.0.1:1"
    started = time.monotonic()
    r = ecmem(small, "region", "ls", ECMEM_ZK=dead)
    assert time.monotonic() - started < 8, "a ZooKeeper nobody listens at fails at once"
    err = r.stderr.decode()
    assert r.returncode == 2
    assert f"could not reach ZooKeeper at {dead} (from $ECMEM_ZK)" in err, err
    assert f"a local cluster is running in {small}" in err and "'unset ECMEM_ZK'" in err
    # no local cluster here: the message says how to start one
    r = ecmem(tmp_path / "none", "status", ECMEM_ZK=dead)
    err = r.stderr.decode()
    assert r.returncode == 2 and "(from $ECMEM_ZK)" in err and "'ecmem up'" in err, err
    assert "local cluster is running" not in err
    # --zk is named as the source too
    r = ecmem(small, "nodes", "--zk", dead)
    assert r.returncode == 2 and "(from --zk)" in r.stderr.decode()


def js(r: subprocess.CompletedProcess[bytes]) -> dict:  # type: ignore[type-arg]
    assert r.stdout, r.stderr.decode()
    return json.loads(r.stdout)


def test_local_cluster_lifecycle(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ecmem(state, "up", "--nodes", "6", "--capacity", "512MiB", "--json")
    try:
        assert first.returncode == 0, first.stderr.decode()
        up = js(first)
        assert up["zk"].startswith("127.0.0.1:")
        assert [n["id"] for n in up["nodes"]] == [f"node-{i}" for i in range(1, 7)]
        assert all(psutil.pid_exists(n["pid"]) and n["address"] for n in up["nodes"])
        again = js(ecmem(state, "up", "--nodes", "6", "--json"))
        assert again == up, "a second 'up' changes nothing"

        nodes = js(ecmem(state, "nodes", "--json"))["nodes"]
        assert {n["id"]: n["pid"] for n in nodes} == {n["id"]: n["pid"] for n in up["nodes"]}
        assert all(n["state"] == "up" and n["capacity"] == 512 << 20 for n in nodes)

        ok = ecmem(state, "status", "--json")
        assert ok.returncode == 0 and js(ok)["status"] == "HEALTH_OK"

        made = ecmem(
            state, "region", "create", "cli/r1", "--size", "3MiB", "--policy", "rep:3", "--json"
        )
        assert made.returncode == 0 and js(made)["size"] == 3 << 20
        assert "cli/r1" in ecmem(state, "region", "ls").stdout.decode()
        assert [
            r["name"] for r in js(ecmem(state, "region", "ls", "cli/", "--json"))["regions"]
        ] == ["cli/r1"]

        src = tmp_path / "in.bin"
        data = os.urandom(5 * 1024 * 1024 + 17)
        src.write_bytes(data)
        put = ecmem(state, "put", str(src), "cli/file", "--json")
        assert put.returncode == 0 and js(put)["bytes"] == len(data)
        refused = ecmem(state, "put", str(src), "cli/file")
        assert refused.returncode == 2 and b"--force" in refused.stderr
        out = tmp_path / "out.bin"
        assert ecmem(state, "get", "cli/file", str(out)).returncode == 0
        assert out.read_bytes() == data
        piped = ecmem(state, "get", "cli/file", "-")
        assert piped.stdout == data
        stdin_put = ecmem(state, "put", "-", "cli/stdin", "--policy", "ec:2+1", stdin=b"hi there")
        assert stdin_put.returncode == 0
        assert ecmem(state, "get", "cli/stdin", "-").stdout == b"hi there"

        info = js(ecmem(state, "region", "info", "cli/file", "--json"))
        assert info["policy"] == "ec:4+2" and info["health"] == "ok"
        assert len(info["placements"][0]["fragments"]) == 6

        victim = info["placements"][0]["fragments"][0]["node"]
        pid = next(n["pid"] for n in up["nodes"] if n["id"] == victim)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            st = ecmem(state, "status", "--json")
            if "NODE_DOWN" in js(st)["checks"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert st.returncode == 1 and js(st)["status"] == "HEALTH_WARN"
        assert victim in js(st)["checks"]["NODE_DOWN"]["summary"]
        assert "REGION_DEGRADED" in js(st)["checks"]
        text = ecmem(state, "status")
        assert (
            text.returncode == 1
            and b"HEALTH_WARN" in text.stdout
            and victim.encode() in text.stdout
        )
        assert ecmem(state, "get", "cli/file", "-").stdout == data
        degraded = ecmem(state, "region", "info", "cli/file")
        assert degraded.returncode == 1 and b"(down)" in degraded.stdout

        # up again restarts the missing node with its id
        assert ecmem(state, "up", "--json").returncode == 0
        assert js(ecmem(state, "nodes", "--json"))["nodes"][0]["state"] == "up"

        assert ecmem(state, "region", "rm", "cli/r1").returncode == 0
        assert ecmem(state, "region", "info", "cli/r1").returncode == 2
    finally:
        down = ecmem(state, "down", "--json")
    assert down.returncode == 0
    stopped = js(down)["stopped"]
    assert "zookeeper" in stopped and "coordinator" in stopped
    time.sleep(0.5)
    for n in up["nodes"]:
        assert not psutil.pid_exists(n["pid"]) or psutil.Process(n["pid"]).status() == "zombie"
    assert ecmem(state, "status").returncode == 2


def test_down_keep_data_then_up_keeps_regions(tmp_path: Path) -> None:
    """'up' persists by default, so regions survive 'down --keep-data' and 'up'; options
    that 'up' cannot apply to the existing cluster are named in a warning."""
    state = tmp_path / "state"
    first = ecmem(state, "up", "--nodes", "3", "--capacity", "64MiB", "--json")
    try:
        assert first.returncode == 0, first.stderr.decode()
        assert js(first)["persist"] is True
        data = os.urandom(3 * 1024 * 1024 + 5)
        src = tmp_path / "in.bin"
        src.write_bytes(data)
        put = ecmem(state, "put", str(src), "keep/r", "--policy", "ec:2+1")
        assert put.returncode == 0, put.stderr.decode()

        # fewer nodes, another capacity, RAM only: not applied, and said so
        odd = ecmem(state, "up", "--nodes", "2", "--capacity", "128MiB", "--no-persist")
        assert odd.returncode == 1, odd.stderr.decode()
        err = odd.stderr.decode()
        assert "--nodes 2 ignored" in err and "has 3 nodes" in err
        assert "--capacity 128.0 MiB ignored" in err and "64.0 MiB" in err
        assert "--no-persist ignored" in err
        assert "'ecmem down'" in err and "'ecmem up'" in err
        # more nodes: added, with the cluster's way of keeping data
        more = ecmem(state, "up", "--nodes", "4", "--json")
        assert more.returncode == 0, more.stderr.decode()
        assert js(more)["added"] == ["node-4"] and js(more)["warnings"] == []
        assert (state / "nodes" / "node-4").is_dir()
        # a plain 'up' on a 4-node cluster asks for nothing different
        plain = ecmem(state, "up")
        assert plain.returncode == 0 and not plain.stderr, plain.stderr.decode()

        down = ecmem(state, "down", "--keep-data")
        assert down.returncode == 0, down.stderr.decode()
        assert b"kept: metadata and node fragments" in down.stdout
        again = ecmem(state, "up", "--json")
        assert again.returncode == 0, again.stderr.decode()
        assert len(js(again)["nodes"]) == 4
        assert ecmem(state, "get", "keep/r", "-").stdout == data
        info = js(ecmem(state, "region", "info", "keep/r", "--json"))
        assert info["health"] == "ok", info
    finally:
        ecmem(state, "down")
    assert not (state / "nodes").exists()


def test_down_keep_data_without_persistence_says_memory_is_lost(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # a cluster that ran with --no-persist: nodes without a data dir (none running now)
    (state / "cluster.json").write_text(
        json.dumps(
            {
                "zk": "127.0.0.1:1",
                "nodes": {f"node-{i}": {"id": f"node-{i}", "pid": 0} for i in (1, 2)},
            }
        )
    )
    r = ecmem(state, "down", "--keep-data")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "node memory is not kept" in err and "node-1, node-2" in err, err
    assert "--no-persist" in err
    assert (state / "cluster.json").exists()
    helptext = ecmem(state, "down", "--help").stdout.decode()
    assert "fragments mirrored under STATE_DIR/nodes" in " ".join(helptext.split())
    assert "RAM only: those are lost" in " ".join(helptext.split())


def test_stale_ecmem_zk_in_the_library(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ecmem

    monkeypatch.setenv("ECMEM_ZK", "127.0.0.1:1")
    with pytest.raises(ecmem.EcmemError) as err:
        ecmem.connect(state_dir=small, timeout=1)
    msg = str(err.value)
    assert "could not reach ZooKeeper at 127.0.0.1:1 (from $ECMEM_ZK) within 1s" in msg, msg
    assert f"a local cluster is running in {small}" in msg


def test_put_out_of_space_leaves_no_region(small: Path, tmp_path: Path) -> None:
    """A put that does not fit removes the region it made, and with it the staged data."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(400 * 1024 * 1024))  # rep:3 needs 1200 MiB, the nodes hold 1024
    r = ecmem(small, "put", str(src), "full/big", "--policy", "rep:3")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "removed region full/big, which held only part of" in err, err
    assert "error:" in err
    assert ecmem(small, "region", "info", "full/big").returncode == 2
    deadline = time.monotonic() + 10
    while True:  # nodes report what they hold to ZooKeeper every so often
        used = [n["used"] for n in js(ecmem(small, "nodes", "--json"))["nodes"]]
        if sum(used) < 16 * 1024 * 1024 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # A node the client had given up on (missed heartbeats under load) misses the delete;
    # then the message must say so, and the scrub removes what it holds later.
    assert sum(used) < 16 * 1024 * 1024 or "still hold its fragments" in err, (used, err)
    small_put = ecmem(small, "put", "-", "full/after", "--policy", "rep:3", stdin=b"fits")
    assert small_put.returncode == 0, small_put.stderr.decode()
    assert ecmem(small, "region", "rm", "full/after").returncode == 0


def test_rep1_warns_and_put_reads_pipes_fifos_and_dev_null(small: Path, tmp_path: Path) -> None:
    made = ecmem(small, "region", "create", "trap/one", "--policy", "rep:1")
    assert made.returncode == 0, made.stderr.decode()
    assert b"no redundancy" in made.stderr and b"rep:2" in made.stderr
    put1 = ecmem(small, "put", "-", "trap/one2", "--policy", "rep:1", stdin=b"x")
    assert put1.returncode == 0 and b"no redundancy" in put1.stderr
    quiet = ecmem(small, "region", "create", "trap/two", "--policy", "ec:2+1")
    assert quiet.returncode == 0 and not quiet.stderr, quiet.stderr.decode()

    # /dev/null: an empty region
    r = ecmem(small, "put", "/dev/null", "trap/null", "--policy", "ec:2+1")
    assert r.returncode == 0, r.stderr.decode()
    assert js(ecmem(small, "region", "info", "trap/null", "--json"))["size"] == 0
    # a FIFO with a writer
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"printf 'through a fifo' > {fifo}"])
    r = ecmem(small, "put", str(fifo), "trap/fifo", "--policy", "ec:2+1")
    writer.wait(timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    assert ecmem(small, "get", "trap/fifo", "-").stdout == b"through a fifo"
    # a pipe: process substitution, as a shell user writes it
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECMEM_")}
    env["ECMEM_STATE_DIR"] = str(small)
    r2 = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m ecmem.cli.main put <(printf piped) trap/pipe --policy rep:2",
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert r2.returncode == 0, r2.stderr.decode()
    assert ecmem(small, "get", "trap/pipe", "-").stdout == b"piped"
    missing = ecmem(small, "put", str(tmp_path / "nope.bin"), "trap/nope")
    assert missing.returncode == 2 and b"no such file" in missing.stderr
    for name in ("one", "one2", "two", "null", "fifo", "pipe"):
        assert ecmem(small, "region", "rm", f"trap/{name}").returncode == 0


def test_pipe_to_head_quits_quietly(small: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    assert ecmem(small, "put", "-", "trap/head", "--policy", "ec:2+1", stdin=data).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECMEM_")}
    env["ECMEM_STATE_DIR"] = str(small)
    for args in (["get", "trap/head", "-"], ["region", "ls"]):
        r = subprocess.run(
            ["bash", "-c", f"{sys.executable} -m ecmem.cli.main {' '.join(args)} | head -c 10"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert r.returncode == 0 and len(r.stdout) == 10 or args[0] == "region", r
        assert r.stderr == b"", r.stderr.decode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecmem.cli.main", "get", "trap/head", "-"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == -signal.SIGPIPE, "ends by SIGPIPE, like other Unix tools"
    assert err == b"", err.decode()
    assert ecmem(small, "region", "rm", "trap/head").returncode == 0


def test_get_into_missing_directory_and_bad_mount_prefix(small: Path, tmp_path: Path) -> None:
    assert ecmem(small, "put", "-", "trap/g", "--policy", "ec:2+1", stdin=b"g").returncode == 0
    where = tmp_path / "no" / "such"
    r = ecmem(small, "get", "trap/g", str(where / "out.bin"))
    err = r.stderr.decode()
    assert r.returncode == 2 and f"directory {where} does not exist" in err, err
    assert ".part" not in err and "Errno" not in err
    assert ecmem(small, "region", "rm", "trap/g").returncode == 0
    mp = tmp_path / "mnt"
    mp.mkdir()
    bad = ecmem(small, "mount", str(mp), "--prefix", "bad//p")
    err = bad.stderr.decode()
    assert bad.returncode == 2 and "--prefix 'bad//p' is not a region name prefix" in err, err
    assert not os.path.ismount(mp)


def test_node_down_holding_nothing_is_out_everywhere(small: Path) -> None:
    """'nodes' and 'status' agree on a down node that holds nothing: out, exit 0. And
    with a node down that holds data, commands print only their own output."""
    assert (
        ecmem(small, "put", "-", "trap/o", "--policy", "ec:2+1", stdin=b"o" * 5000).returncode == 0
    )
    holding = set()
    for reg in js(ecmem(small, "region", "ls", "--json"))["regions"]:
        info = js(ecmem(small, "region", "info", reg["name"], "--json"))
        holding |= {f["node"] for p in info["placements"] for f in p["fragments"]}
    nodes = js(ecmem(small, "nodes", "--json"))["nodes"]
    idle = next(n for n in nodes if n["id"] not in holding)
    holder = next(n for n in nodes if n["id"] in holding)
    try:
        os.kill(idle["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            r = ecmem(small, "nodes", "--json")
            state = {n["id"]: n["state"] for n in js(r)["nodes"]}[idle["id"]]
            if state != "up" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state == "out" and r.returncode == 0, (state, r.returncode)
        text = ecmem(small, "nodes")
        assert text.returncode == 0 and b" out " in text.stdout
        st = ecmem(small, "status", "--json")
        assert st.returncode == 0 and js(st)["nodes"]["out"] == [idle["id"]]

        os.kill(holder["pid"], signal.SIGKILL)
        while True:
            r = ecmem(small, "nodes", "--json")
            state = {n["id"]: n["state"] for n in js(r)["nodes"]}[holder["id"]]
            if state != "up" or time.monotonic() > deadline + 20:
                break
            time.sleep(0.5)
        assert state == "down" and r.returncode == 1
        for args in (["get", "trap/o", "-"], ["status"], ["nodes"], ["region", "ls"]):
            r = ecmem(small, *args)
            assert r.stderr == b"", (args, r.stderr.decode())
        assert ecmem(small, "get", "trap/o", "-").stdout == b"o" * 5000
    finally:
        assert ecmem(small, "up").returncode == 0
    assert ecmem(small, "region", "rm", "trap/o").returncode == 0
