from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TestCluster, shared_zookeeper

_names = itertools.count(1)


def _have_zookeeper() -> str | None:
    if not Path("/usr/share/java/zookeeper.jar").exists():
        return "ZooKeeper is not installed (run 'make setup')"
    if shutil.which("java") is None:
        return "java is not installed (run 'make setup')"
    return None


@pytest.fixture(scope="session")
def zk_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = _have_zookeeper()
    if missing:
        pytest.fail(missing)  # integration tests must not pass silently without ZooKeeper
    lc, state = shared_zookeeper(tmp_path_factory.mktemp("zookeeper"))
    yield state.zk
    lc.down()


def make_cluster(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, **kw: object
) -> TestCluster:
    n = next(_names)
    return TestCluster(tmp_path_factory.mktemp(f"cluster{n}"), zk_hosts, f"test{n}", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """Six storage nodes shared by a module's tests; tests must leave them running."""
    c = make_cluster(zk_hosts, tmp_path_factory)
    yield c
    c.down()


@pytest.fixture()
def fresh_cluster(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """Six storage nodes of the test's own, for tests that kill or fill them."""
    c = make_cluster(zk_hosts, tmp_path_factory)
    yield c
    c.down()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("cluster", "fresh_cluster"):
            c = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(c, TestCluster):
                report.sections.append((f"logs of {c.name}", c.logs()))
