from __future__ import annotations

from ecmem.health import HEALTH_ERR, HEALTH_OK, HEALTH_WARN, assess
from ecmem.meta.model import NodeInfo, RegionMeta


def node(i: int, state: str = "up", used: int = 0, inc: str = "a") -> NodeInfo:
    return NodeInfo(f"n{i}", f"127.0.0.1:{1000 + i}", 100, used, f"n{i}", inc, state=state)


def region(slabs: int = 2) -> RegionMeta:
    placement = [(f"n{i}", "a") for i in range(6)]
    # 1 MiB stripes (4 x 256 KiB), 4 stripes per slab
    return RegionMeta(
        "r", "0" * 16, "ec:4+2", slabs * 4 * (1 << 20), 256 * 1024, 4, slabs=[placement] * slabs
    )


def test_ok() -> None:
    report, regions = assess({f"n{i}": node(i) for i in range(6)}, [region()])
    assert report.status == HEALTH_OK and not report.checks
    assert regions[0].state == "ok" and report.stripes == 8


def test_degraded_names_nodes() -> None:
    nodes = {f"n{i}": node(i) for i in range(6)}
    nodes["n1"] = node(1, "down")
    nodes["n4"] = node(4, "down")
    report, regions = assess(nodes, [region()])
    codes = {c.code: c for c in report.checks}
    assert report.status == HEALTH_WARN
    assert "n1" in codes["NODE_DOWN"].summary and "n4" in codes["NODE_DOWN"].summary
    assert "8/8 stripes" in codes["REGION_DEGRADED"].summary
    assert regions[0].lost == {0: [1, 4], 1: [1, 4]}


def test_unavailable_and_restarted_empty() -> None:
    nodes = {f"n{i}": node(i) for i in range(6)}
    nodes["n0"] = node(0, "down")
    nodes["n2"] = node(2, "down")
    nodes["n3"] = node(3, inc="b")  # came back without its data
    report, _ = assess(nodes, [region()])
    assert report.status == HEALTH_ERR
    assert "REGION_UNAVAILABLE" in {c.code for c in report.checks}
    assert report.unavailable_stripes == 8


def test_nearfull() -> None:
    nodes = {f"n{i}": node(i) for i in range(6)}
    nodes["n5"] = node(5, used=90)
    report, _ = assess(nodes, [])
    assert report.status == HEALTH_WARN
    assert [c.code for c in report.checks] == ["NODE_NEARFULL"]


def test_region_record_roundtrip_and_size() -> None:
    meta = region(16384)  # a 1 TiB-class region: 16384 slabs
    meta.slabs = {s: [(f"n{(s + i) % 9}", "inc" * 5) for i in range(6)] for s in range(16384)}
    meta.floors = [(3, 7)]
    raw = meta.to_json()
    assert len(raw) < 512 * 1024, "must fit ZooKeeper's 1 MB znode limit with room to spare"
    back = RegionMeta.from_json(raw)
    assert back.slabs == meta.slabs and back.floors == meta.floors and back == meta


def test_handoff_holder_counts_as_degraded_until_rebuilt() -> None:
    meta = region(1)
    meta.partial = [(0, 2)]
    report, regions = assess({f"n{i}": node(i) for i in range(6)}, [meta])
    assert report.status == HEALTH_WARN and regions[0].lost == {0: [2]}
    assert "REGION_DEGRADED" in {c.code for c in report.checks}


def test_lost_stripes_are_an_error_naming_the_region_and_survive_the_record() -> None:
    nodes = {f"n{i}": node(i) for i in range(6)}
    meta = region()
    meta.written, meta.lost = [(0, 8)], [(2, 4), (6, 7)]
    meta = RegionMeta.from_json(meta.to_json())
    assert meta.lost == [(2, 4), (6, 7)] and meta.written == [(0, 8)]
    report, regions = assess(nodes, [meta, region()])
    codes = {c.code: c for c in report.checks}
    assert report.status == HEALTH_ERR
    assert "REGION_DATA_LOST" in codes and "r" in codes["REGION_DATA_LOST"].summary
    assert codes["REGION_DATA_LOST"].detail == ["r: stripes 2-3, 6"]
    assert report.lost_stripes == 3 and regions[0].state == "lost"
    assert regions[1].state == "ok"


def test_a_handoff_keeps_the_version_its_holder_counts_from_until_settled() -> None:
    meta = region(2)
    meta.hand_off(1, 3, ("n9", "b"), since=(2 << 32) + 7)
    meta.hand_off(0, 5, ("", ""), since=99)  # no node: vacant, not partial
    back = RegionMeta.from_json(meta.to_json())
    assert back.slabs[1][3] == ("n9", "b") and back.slabs[0][5] == ("", "")
    assert back.partial_slots() == {(1, 3): (2 << 32) + 7}
    back.hand_off(1, 3, ("n8", "c"), since=5)  # handed on again: the newer bound only
    assert back.partial_slots() == {(1, 3): 5}
    back.settle_slots([(1, 3)])
    assert back.partial == [] and back.partial_since == [] and back.partial_slots() == {}
    old = RegionMeta.from_json(meta.to_json().replace(b',"partial_since":[[1,3,8589934599]]', b""))
    assert old.partial_slots() == {(1, 3): 0}  # a record from before: every copy counts
