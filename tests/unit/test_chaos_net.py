"""Run ids name the process owning a chaos run's namespaces and links."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos.net import PREFIX, RUN_LEN, owner, run_id


@given(
    st.integers(min_value=1, max_value=36**RUN_LEN - 1), st.sampled_from(["-n1", "br", "12", "12p"])
)
def test_every_name_of_a_run_names_its_owner(pid: int, suffix: str) -> None:
    run = run_id(pid)
    assert len(run) == RUN_LEN and run.isalnum()
    name = f"{PREFIX}{run}{suffix}"
    assert owner(name) == pid
    assert len(name) <= 15  # interface names


def test_names_that_are_not_a_runs_have_no_owner() -> None:
    assert owner("eth0") is None
    assert owner("ecm") is None
    assert owner("ecmAB-x") is None  # too short and not base 36 lower case
