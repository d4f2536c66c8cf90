"""Bad input gets a clear error that names the problem, from the API and the CLI."""

from __future__ import annotations

import json

import pytest

import ecmem
from tests.harness import TestCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(cluster: TestCluster):  # type: ignore[no-untyped-def]
    cl = cluster.client()
    yield cl
    cl.close()


@pytest.mark.parametrize("policy", ["ec:0+2", "ec:4+-1", "rep:0", "ec:40+40", "foo"])
def test_bad_policies(client, policy: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ecmem.PolicyError) as err:
        client.create_region("p/bad", 0, policy)
    assert policy.split(":")[0] in str(err.value) or "policy" in str(err.value)
    assert not client.exists("p/bad")


def test_negative_size(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ecmem.ConfigError, match="negative"):
        client.create_region("neg", -1)
    client.create_region("neg2", 10)
    with pytest.raises(ecmem.ConfigError, match="negative"):
        client.truncate("neg2", -5)
    with pytest.raises(ecmem.ConfigError, match="negative"):
        client.pread("neg2", -1, 5)
    with pytest.raises(ecmem.ConfigError, match="negative"):
        client.pwrite("neg2", -3, b"x")
    assert client.stat("neg2").size == 10
    client.delete_region("neg2")


@pytest.mark.parametrize("name", ["a/../b", "", "/lead", "trail/", "a//b", ".."])
def test_bad_names(client, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ecmem.InvalidNameError):
        client.create_region(name, 0)


def test_unknown_region(client) -> None:  # type: ignore[no-untyped-def]
    for call in (
        lambda: client.stat("nope"),
        lambda: client.pread("nope", 0, 1),
        lambda: client.open("nope", "rb"),
        lambda: client.delete_region("nope"),
        lambda: client.pwrite("nope", 0, b"x"),
    ):
        with pytest.raises(ecmem.RegionNotFound) as err:
            call()
        assert "nope" in str(err.value) and "ecmem region ls" in str(err.value)


def test_exists_and_modes(client) -> None:  # type: ignore[no-untyped-def]
    client.create_region("dup", 0)
    with pytest.raises(ecmem.RegionExists, match="exists already"):
        client.create_region("dup", 0)
    with pytest.raises(ecmem.RegionExists):
        client.open("dup", "xb")
    with pytest.raises(ecmem.ConfigError, match="binary"):
        client.open("dup", "rt")  # text mode
    with pytest.raises(ecmem.ConfigError, match="not understood"):
        client.open("dup", "rw")
    with pytest.raises(ecmem.ConfigError, match="has policy ec:4\\+2"):
        client.open("dup", "r+b", policy="rep:3")
    with client.open("dup", "rb") as f, pytest.raises(OSError, match="not open for writing"):
        f.write(b"x")
    client.delete_region("dup")


def test_errors_are_ecmem_errors_with_retriable_flag() -> None:
    assert issubclass(ecmem.PolicyError, ecmem.EcmemError)
    assert ecmem.NodeUnavailable.retriable and not ecmem.PolicyError.retriable


def test_no_cluster_is_a_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ECMEM_ZK", raising=False)
    with pytest.raises(ecmem.ConfigError, match="ecmem up"):
        ecmem.connect(state_dir=tmp_path)
    with pytest.raises(ecmem.CoordinationError, match="could not reach ZooKeeper"):
        ecmem.connect("127.0.0.1:1", timeout=1)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["region", "create", "x", "--policy", "ec:0+2"], "at least 1"),
        (["region", "create", "x", "--size", "-5"], "negative"),
        (["region", "create", "a/../b"], ".."),
        (["region", "info", "missing"], "no region named"),
        (["get", "missing", "/dev/null"], "no region named"),
        (["put", "/nonexistent/file", "x"], "no such file"),
        (["region", "create", "x", "--mode", "9z"], "octal"),
    ],
)
def test_cli_errors(cluster: TestCluster, args: list[str], needle: str) -> None:
    r = cluster.cli(*args)
    assert r.returncode == 2, r
    assert needle in r.stderr and "Traceback" not in r.stderr
    j = cluster.cli(*args, "--json")
    assert j.returncode == 2
    assert needle in json.loads(j.stdout)["error"]["message"]
