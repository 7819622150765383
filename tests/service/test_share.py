"""Fair shares of a shared endpoint by weight, and when a child restarts to take a new share."""

from __future__ import annotations

from engine.service.share import Allot, Demand, Use, allot, needs_restart

SRV = "http://gpu:8000"


def _d(job: str, weight: float, mif: int = 64, rpm: float = 0.0, server: str = SRV) -> Demand:
    return Demand(job, weight, {"vllm": Use(server, mif, rpm)})


def test_split_by_weight_sums_to_capacity() -> None:
    out = allot([_d("a", 3), _d("b", 1)], {SRV: Use(SRV, 8)})
    assert out["a"]["vllm"].max_in_flight == 6 and out["b"]["vllm"].max_in_flight == 2
    out = allot([_d("a", 1), _d("b", 1), _d("c", 1)], {SRV: Use(SRV, 64)})
    assert sorted(a["vllm"].max_in_flight for a in out.values()) == [21, 21, 22]
    out = allot([_d(str(i), 1) for i in range(5)], {SRV: Use(SRV, 3)})
    assert all(a["vllm"].max_in_flight == 1 for a in out.values())  # at least one each


def test_capacity_from_jobs_is_the_smallest_declared_and_rates_split() -> None:
    out = allot([_d("a", 1, mif=16, rpm=600), _d("b", 1, mif=8, rpm=1200)])
    assert out["a"]["vllm"] == Allot(4, 300.0, 0.0) and out["b"]["vllm"] == Allot(4, 300.0, 0.0)
    alone = allot([_d("a", 1, mif=16)])
    assert alone["a"]["vllm"].max_in_flight == 16


def test_other_servers_are_not_shared() -> None:
    out = allot([_d("a", 1, server="http://x"), _d("b", 1, server="http://y")])
    assert out["a"]["vllm"].max_in_flight == 64 and out["b"]["vllm"].max_in_flight == 64


def test_restart_hysteresis() -> None:
    cur = {"vllm": Allot(8)}
    assert needs_restart(cur, {"vllm": Allot(4)}, ran_for=0, grow_after=30)  # over its share: shrink now
    assert not needs_restart(cur, {"vllm": Allot(7)}, ran_for=100, grow_after=30)
    assert not needs_restart(cur, {"vllm": Allot(16)}, ran_for=5, grow_after=30)  # grows only later
    assert needs_restart(cur, {"vllm": Allot(16)}, ran_for=31, grow_after=30)
    assert not needs_restart(cur, {"vllm": Allot(12)}, ran_for=100, grow_after=30)
    assert needs_restart({"vllm": Allot(4, 600)}, {"vllm": Allot(4, 300)}, ran_for=0, grow_after=30)
