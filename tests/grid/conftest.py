from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.grid.grid import Grid


@pytest.fixture()
async def grid(zk_hosts: str) -> AsyncIterator[Grid]:
    g = await Grid.start(zk_hosts, 6)
    yield g
    await g.close()
