"""The limiter's pure arithmetic, driven with explicit `now` values."""

from __future__ import annotations

import math
from bisect import bisect_left

import pytest

from engine.scheduler.budget import Budget

BIG = 10**9


def _budget(**kw: float) -> Budget:
    kw.setdefault("max_in_flight", BIG)
    b = Budget(**kw)  # type: ignore[arg-type]
    b.start(0.0)
    return b


def _admit_all(b: Budget, now: float, tokens: int = 1) -> int:
    """Admit (and settle at once) as many requests as fit at `now`."""
    n = 0
    while b.reserve(now, tokens) == 0.0:
        b.settle(now, tokens, tokens)
        n += 1
        assert n < 10**6
    return n


# ---- requests per minute ------------------------------------------------------------------------


def test_rpm_bucket_starts_with_one_second_of_budget() -> None:
    b = _budget(requests_per_minute=600)  # 10/s
    assert _admit_all(b, 0.0) == 10
    assert b.reserve(0.0, 1) == pytest.approx(0.1)


def test_rpm_refills_at_configured_rate() -> None:
    b = _budget(requests_per_minute=600)
    _admit_all(b, 0.0)
    assert _admit_all(b, 0.05) == 0  # half a request refilled
    assert b.reserve(0.05, 1) == pytest.approx(0.05)
    assert _admit_all(b, 0.1) == 1
    assert _admit_all(b, 0.6) == 5  # 0.5 s later: five more
    # a long pause refills only up to capacity (one second's worth)
    assert _admit_all(b, 100.0) == 10


def test_unlimited_budget_admits_everything() -> None:
    b = _budget()
    assert all(b.reserve(0.0, 10**6) == 0.0 for _ in range(1000))
    assert b.stats.admitted == 1000


def test_rpm_below_60_still_admits() -> None:
    b = _budget(requests_per_minute=6)  # one every 10 s; capacity floored at one request
    assert b.reserve(0.0, 1) == 0.0
    assert b.reserve(0.0, 1) == pytest.approx(10.0)
    assert b.reserve(10.0, 1) == 0.0


# ---- tokens per minute: reserve and settle ------------------------------------------------------


def test_tpm_reservation_charges_estimate() -> None:
    b = _budget(tokens_per_minute=6000)  # 100 tokens/s, capacity 100
    assert b.reserve(0.0, 60) == 0.0
    assert b.reserve(0.0, 41) == pytest.approx(0.01)  # 40 left
    assert b.reserve(0.0, 40) == 0.0
    assert b.stats.tokens_reserved == 100


def test_settle_refunds_when_usage_below_estimate() -> None:
    b = _budget(tokens_per_minute=6000)
    assert b.reserve(0.0, 60) == 0.0
    b.settle(0.0, 60, 20)  # 40 refunded: 80 available
    assert b.reserve(0.0, 80) == 0.0
    assert b.reserve(0.0, 1) == pytest.approx(0.01)
    assert b.stats.tokens_used == 20


def test_refund_does_not_overfill_the_bucket() -> None:
    b = _budget(tokens_per_minute=6000)
    assert b.reserve(0.0, 10) == 0.0
    b.settle(5.0, 10, 0)  # bucket already full again at t=5
    assert b.reserve(5.0, 100) == 0.0
    assert b.reserve(5.0, 1) == pytest.approx(0.01)


def test_settle_charges_extra_when_usage_above_estimate() -> None:
    b = _budget(tokens_per_minute=6000)
    assert b.reserve(0.0, 100) == 0.0
    b.settle(0.0, 100, 250)  # 150 more than reserved: the bucket goes to -150
    assert b.reserve(0.0, 10) == pytest.approx(1.6)  # (10 + 150) / 100
    assert b.reserve(1.6, 10) == 0.0


def test_settle_none_keeps_the_estimate() -> None:
    b = _budget(tokens_per_minute=6000)
    assert b.reserve(0.0, 60) == 0.0
    b.settle(0.0, 60, None)
    assert b.reserve(0.0, 41) == pytest.approx(0.01)
    assert b.reserve(0.0, 40) == 0.0
    assert b.stats.tokens_used == 60


# ---- max in flight ------------------------------------------------------------------------------


def test_max_in_flight_waits_for_settle() -> None:
    b = Budget(max_in_flight=2)
    b.start(0.0)
    assert b.reserve(0.0, 1) == 0.0
    assert b.reserve(0.0, 1) == 0.0
    assert math.isinf(b.reserve(0.0, 1))
    assert math.isinf(b.reserve(1000.0, 1))  # time alone does not help
    assert b.stats.in_flight == 2
    b.settle(1000.0, 1, 1)
    assert b.reserve(1000.0, 1) == 0.0
    assert math.isinf(b.reserve(1000.0, 1))


# ---- 429 cool-down ------------------------------------------------------------------------------


def test_429_cooldown_is_shared_by_every_request() -> None:
    b = _budget()
    b.rate_limited(10.0, 5.0)
    assert b.reserve(11.0, 1) == pytest.approx(4.0)
    assert b.reserve(12.5, 999) == pytest.approx(2.5)  # any request, any size
    assert b.stats.admitted == 0
    assert b.reserve(15.0, 1) == 0.0
    assert b.stats.rate_limited == 1


def test_retry_after_respected_and_never_shortened() -> None:
    b = _budget()
    b.rate_limited(0.0, 30.0)
    b.rate_limited(1.0, 2.0)  # a later, shorter Retry-After does not cut the first short
    assert b.reserve(5.0, 1) == pytest.approx(25.0)
    b.rate_limited(6.0, 40.0)  # a longer one extends it
    assert b.reserve(7.0, 1) == pytest.approx(39.0)


def test_429_without_retry_after_uses_default_cooldown() -> None:
    b = _budget(default_cooldown=1.5)
    b.rate_limited(3.0, None)
    assert b.reserve(3.0, 1) == pytest.approx(1.5)
    assert b.reserve(4.5, 1) == 0.0


def test_429_empties_the_buckets() -> None:
    b = _budget(requests_per_minute=600)
    b.rate_limited(0.0, 0.0)  # zero pause: but the burst is gone
    assert b.reserve(0.0, 1) == pytest.approx(0.1)


# ---- x-ratelimit headers ------------------------------------------------------------------------


def test_observe_headers_lowers_budget() -> None:
    b = _budget(requests_per_minute=600, tokens_per_minute=60000)  # 10 req, 1000 tokens capacity
    b.observe_headers(0.0, 2, None, None, None)
    assert _admit_all(b, 0.0) == 2
    b2 = _budget(requests_per_minute=600, tokens_per_minute=60000)
    b2.observe_headers(0.0, None, 300, None, None)
    assert b2.reserve(0.0, 300) == 0.0
    assert b2.reserve(0.0, 100) == pytest.approx(0.1)  # 100 tokens at 1000/s


def test_observe_headers_never_raises_budget() -> None:
    b = _budget(requests_per_minute=600)
    _admit_all(b, 0.0)
    b.observe_headers(0.0, 500, None, 1.0, None)  # the server is more generous: ignored
    assert b.reserve(0.0, 1) == pytest.approx(0.1)


def test_remaining_zero_with_reset_starts_cooldown() -> None:
    b = _budget(requests_per_minute=600)
    b.observe_headers(0.0, 0, None, 3.0, None)
    assert b.reserve(1.0, 1) == pytest.approx(2.0)
    assert b.reserve(3.0, 1) == 0.0


def test_remaining_zero_tokens_with_reset_starts_cooldown_even_without_local_limit() -> None:
    b = _budget()  # no local limits configured: the server's headers still count
    b.observe_headers(0.0, 10, 0, 0.5, 7.0)
    assert b.reserve(2.0, 1) == pytest.approx(5.0)
    assert b.reserve(7.0, 1) == 0.0


# ---- no starvation ------------------------------------------------------------------------------


def test_request_bigger_than_bucket_is_admitted_eventually() -> None:
    b = _budget(tokens_per_minute=600)  # 10 tokens/s, capacity 10
    assert b.reserve(0.0, 7) == 0.0  # bucket partly drained
    now, waits = 0.0, 0
    while (d := b.reserve(now, 500)) > 0:
        assert math.isfinite(d)
        now += d
        waits += 1
        assert waits < 10
    assert now == pytest.approx(0.7)  # a full bucket is enough, not 500 tokens' worth
    # the big request is paid in full afterwards: the next one waits for the debt
    assert b.reserve(now, 1) == pytest.approx((1 + 490) / 10)


def test_big_request_not_starved_by_small_ones_behind_it() -> None:
    """The async Limiter is FIFO: small requests behind a big one do not overtake it forever."""
    import asyncio

    from engine.scheduler.limiter import Limiter

    async def main() -> list[str]:
        lim = Limiter(
            Budget(tokens_per_minute=60000, max_in_flight=BIG, burst_seconds=0.2)
        )  # 1000/s, cap 200
        await lim.acquire(200)  # drain the bucket
        order: list[str] = []

        async def req(name: str, tokens: int) -> None:
            await lim.acquire(tokens)
            order.append(name)
            lim.release(tokens, 1)  # real usage: one token (refund the rest)

        big = asyncio.create_task(req("big", 5000))
        await asyncio.sleep(0)
        smalls = [asyncio.create_task(req(f"s{i}", 1)) for i in range(20)]
        await asyncio.wait_for(asyncio.gather(big, *smalls), 5.0)
        return order

    order = asyncio.run(main())
    assert order[0] == "big", order
    assert len(order) == 21


# ---- simulation ---------------------------------------------------------------------------------


def _simulate(b: Budget, until: float, tokens: int = 1, used: int | None = None) -> list[float]:
    admitted: list[float] = []
    now = 0.0
    while now < until:
        d = b.reserve(now, tokens)
        if d == 0.0:
            admitted.append(now)
            b.settle(now, tokens, used if used is not None else tokens)
            continue
        assert math.isfinite(d) and d > 0
        nxt = now + d
        now = nxt if nxt > now else math.nextafter(now, math.inf)
    return admitted


def _max_in_window(times: list[float], window: float) -> int:
    return max(bisect_left(times, t + window) - i for i, t in enumerate(times))


def test_simulated_rpm_600_over_120s() -> None:
    rpm = 600
    b = _budget(requests_per_minute=rpm)
    times = _simulate(b, 120.0)
    assert abs(len(times) - 1200) <= 12, len(times)
    capacity = rpm / 60 * b.burst_seconds
    assert _max_in_window(times, 10.0) <= rpm / 60 * 10 + capacity
    assert _max_in_window(times, 1.0) <= rpm / 60 * 1 + capacity
    assert b.stats.admitted == len(times)


def test_simulated_tpm_with_refunds_tracks_real_usage() -> None:
    # 60k tokens/min = 1000/s; each request reserves 200 but uses 100: refunds double the rate
    b = _budget(tokens_per_minute=60000)
    times = _simulate(b, 60.0, tokens=200, used=100)
    assert abs(len(times) - 600) <= 12, len(times)
    assert b.stats.tokens_used == 100 * len(times)
