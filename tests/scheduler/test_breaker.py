"""The circuit breaker's state machine, driven with explicit times."""

from __future__ import annotations

import math

import pytest

from engine.scheduler.breaker import BreakerSettings, BreakerState, CircuitBreaker


def _breaker(**kw: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**kw))  # type: ignore[arg-type]


def _fail(b: CircuitBreaker, now: float, n: int) -> None:
    for _ in range(n):
        assert b.available(now)
        b.admit(now)
        b.failure(now)


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    b = _breaker(failure_threshold=3, min_calls=100)
    _fail(b, 0.0, 2)
    b.admit(0.0)
    b.success(0.0)
    _fail(b, 0.0, 2)
    assert b.state is BreakerState.CLOSED
    _fail(b, 0.0, 1)
    assert b.state is BreakerState.OPEN and not b.available(0.5)
    assert b.statistics().trips == 1


def test_opens_on_failure_rate_over_the_window() -> None:
    b = _breaker(failure_threshold=100, window=10, min_calls=10, failure_rate=0.5)
    for i in range(9):  # alternate: never 2 failures in a row, but half of all calls fail
        b.admit(0.0)
        (b.failure if i % 2 else b.success)(0.0)
    assert b.state is BreakerState.CLOSED  # 9 calls < min_calls
    _fail(b, 0.0, 1)  # 10 calls, 5 failed
    assert b.state is BreakerState.OPEN


def test_half_open_admits_one_probe_and_success_closes() -> None:
    b = _breaker(failure_threshold=1, cooldown=2.0)
    _fail(b, 10.0, 1)
    assert b.wait(10.0) == pytest.approx(2.0)
    assert not b.available(11.9)
    assert b.available(12.0) and b.state is BreakerState.HALF_OPEN
    assert b.admit(12.0) is True  # the probe
    assert not b.available(12.0) and math.isinf(b.wait(12.0))  # one probe at a time
    b.success(12.5, probe=True)
    assert b.state is BreakerState.CLOSED and b.available(12.5)
    assert b.admit(12.5) is False


def test_failed_probe_reopens_with_doubled_cooldown_up_to_the_cap() -> None:
    b = _breaker(failure_threshold=1, cooldown=1.0, cooldown_max=3.0, multiplier=2.0)
    _fail(b, 0.0, 1)
    t, cooldowns = 0.0, []
    for _ in range(4):
        t += b.wait(t)
        assert b.available(t) and b.admit(t)
        b.failure(t, probe=True)
        cooldowns.append(b.wait(t))
    assert cooldowns == [2.0, 3.0, 3.0, 3.0]
    assert b.statistics().reopened == 4
    t += b.wait(t)
    b.admit(t)
    b.success(t, probe=True)
    _fail(b, t, 1)  # closing reset the cool-down to its base
    assert b.wait(t) == pytest.approx(1.0)


def test_stale_outcomes_do_not_decide_and_release_frees_the_probe() -> None:
    b = _breaker(failure_threshold=1, cooldown=1.0)
    _fail(b, 0.0, 1)
    b.success(0.5)  # a request sent before the trip answers late: still open
    assert b.state is BreakerState.OPEN
    assert b.available(1.0) and b.admit(1.0)
    b.failure(1.1)  # a stale failure is not the probe's verdict
    b.success(1.1)
    assert b.state is BreakerState.HALF_OPEN and not b.available(1.1)
    b.release(1.2, probe=True)  # e.g. the probe got a 429: no verdict, let another probe go
    assert b.available(1.2)


def test_admit_when_unavailable_is_a_bug() -> None:
    b = _breaker(failure_threshold=1)
    _fail(b, 0.0, 1)
    with pytest.raises(RuntimeError):
        b.admit(0.0)
