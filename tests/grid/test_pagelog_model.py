"""Random writes, truncations and reads of regions with page patches and frequent
folds, against a model of the bytes: the writer's reads and a second client's must
match it after every step. Seeded (a failure names its seed and steps); in-process
nodes, so many sequences run in seconds."""

from __future__ import annotations

import os
import random

import pytest

from ecmem import pagelog
from tests.grid.grid import Grid

CHUNK = 4096  # 16 KiB stripes of ec:4+2, 4-stripe slabs: boundaries come often
SD = 4 * CHUNK
SPAN = 10 * SD
SEQUENCES = int(os.environ.get("ECMEM_MODEL_SEQUENCES", "40"))


def steps(rng: random.Random) -> list[tuple[str, int, int]]:
    out = []
    for _ in range(rng.randint(3, 14)):
        r = rng.random()
        if r < 0.6:
            small = rng.random() < 0.7  # most inside one fragment: page patches
            out.append(("write", rng.randrange(SPAN), rng.randint(1, 600 if small else 3 * SD)))
        elif r < 0.85:
            out.append(("read", rng.randrange(SPAN), rng.randint(0, 2 * SD)))
        else:
            out.append(("truncate", rng.randrange(SPAN), 0))
    return out


async def test_page_writes_folds_and_truncations_match_a_model(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagelog, "FOLD", pagelog.FoldRule(after=3, most=3))
    c = await grid.client()
    reader = await grid.client()
    for seed in range(SEQUENCES):
        rng = random.Random(seed)
        todo = steps(rng)
        name = f"m/{seed}"
        await c.create_region(name, 0, "ec:4+2", chunk=CHUNK, slab_size=4 * SD)
        model = bytearray()
        done: list[tuple[str, int, int]] = []
        try:
            for op, offset, length in todo:
                done.append((op, offset, length))
                if op == "write":
                    data = rng.randbytes(length)
                    await c.pwrite(name, offset, data)
                    model.extend(bytes(max(0, offset - len(model))))
                    model[offset : offset + length] = data
                elif op == "truncate":
                    await c.truncate(name, offset)
                    del model[offset:]
                    model.extend(bytes(offset - len(model)))
                else:
                    want = bytes(model[offset : offset + length])
                    assert await c.pread(name, offset, length) == want, "writer"
                    await reader.stat(name)  # its size afresh (a size is cached, watched)
                    assert await reader.pread(name, offset, length) == want, "reader"
                assert await c.pread(name, 0, SPAN + 3 * SD) == bytes(model), "writer, all"
            await reader.stat(name)
            assert await reader.pread(name, 0, SPAN + 3 * SD) == bytes(model), "reader, all"
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, steps {done}: {exc}") from exc
        await c.delete_region(name)
