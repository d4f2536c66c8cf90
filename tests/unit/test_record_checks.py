"""Region records anyone could have written are checked when read (ecmem/meta/model.py)."""

from __future__ import annotations

import json

import pytest

from ecmem.errors import ProtocolError
from ecmem.meta.model import RegionMeta

GOOD = RegionMeta("r", "00000000000000a1", "ec:2+1", 1 << 20, 4096, 4, slabs={0: [("n1", "a")] * 3})


def variant(**fields: object) -> bytes:
    data = json.loads(GOOD.to_json())
    data.update(fields)
    return json.dumps(data).encode()


def test_a_good_record_reads_back() -> None:
    assert RegionMeta.from_json(GOOD.to_json()) == GOOD


@pytest.mark.parametrize(
    "fields,why",
    [
        ({"id": "../../etc"}, "16 hex"),
        ({"size": -1}, "out of range"),
        ({"size": "1"}, "size holds str"),
        ({"chunk": 0}, "out of range"),
        ({"mtime": 2.0**70}, "out of range"),
        ({"mode": 0o20000}, "out of range"),
        ({"epoch": True}, "epoch holds bool"),
        ({"policy": "ec:9+9+9"}, "cannot read policy"),
        ({"slabs": {"0": [0, 0]}, "holders": [["n1", "a"]]}, "slots"),
        ({"lost": [[0, 1 << 62]]}, "outside the placed slabs"),
        ({"lost": [[400, 401]]}, "outside the placed slabs"),
    ],
)
def test_damaged_records_are_refused_with_why(fields: dict[str, object], why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        RegionMeta.from_json(variant(**fields))
