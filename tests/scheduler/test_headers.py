"""Retry-After and x-ratelimit-* header parsing."""

from __future__ import annotations

import email.utils
import time

import pytest
from multidict import CIMultiDict

from engine.scheduler import headers as hdr

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"), [("5", 5.0), ("0", 0.0), ("1.5", 1.5), (" 12 ", 12.0)]
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert hdr.retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    value = email.utils.formatdate(NOW + 30, usegmt=True)  # e.g. "Tue, 14 Nov 2023 22:13:50 GMT"
    assert value.endswith("GMT")
    assert hdr.retry_after(value, now=NOW) == pytest.approx(30.0)
    assert hdr.retry_after(value, now=NOW + 10) == pytest.approx(20.0)


def test_retry_after_http_date_against_wall_clock() -> None:
    value = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 118.0 <= hdr.retry_after(value) <= 120.5  # type: ignore[operator]


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert hdr.retry_after(email.utils.formatdate(NOW - 60, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Someday, 99 Foo 2023"])
def test_retry_after_absent_or_garbage_is_none(value: str | None) -> None:
    assert hdr.retry_after(value) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("2m30.5s", 150.5),
        ("0.25", 0.25),
        ("7", 7.0),
        ("0s", 0.0),
    ],
)
def test_reset_durations(value: str, seconds: float) -> None:
    assert hdr.duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon"])
def test_reset_absent_or_garbage_is_none(value: str | None) -> None:
    assert hdr.duration(value) is None


def test_ratelimit_absent_is_none() -> None:
    assert hdr.ratelimit({}) is None
    assert (
        hdr.ratelimit({"content-type": "application/json", "x-ratelimit-reset-requests": "1s"})
        is None
    )


def test_ratelimit_full_set_case_insensitive() -> None:
    h = CIMultiDict(
        {
            "X-RateLimit-Limit-Requests": "60",
            "X-RateLimit-Remaining-Requests": "59",
            "X-RateLimit-Remaining-Tokens": "149984",
            "X-RateLimit-Reset-Requests": "1s",
            "X-RateLimit-Reset-Tokens": "6m0s",
        }
    )
    assert hdr.ratelimit(h) == (59.0, 149984.0, 1.0, 360.0)


def test_ratelimit_partial() -> None:
    assert hdr.ratelimit(
        {"x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "20ms"}
    ) == (None, 10.0, None, pytest.approx(0.02))
    assert hdr.ratelimit({"x-ratelimit-remaining-requests": "0"}) == (0.0, None, None, None)
