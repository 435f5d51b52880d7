"""Throttle models under a SimClock, property-tested against each vendor's model."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.sim.clock import SimClock
from handoff.sim.ratelimit import CostBucket, FixedWindow, LeakyBucket, MultiWindow

START = datetime(2026, 3, 1, tzinfo=UTC)
# a run of requests: (simulated seconds to wait before the request, its size)
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3, allow_nan=False), st.integers(1, 50)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_leaky_bucket_never_exceeds_capacity_plus_leak(run: list[tuple[float, int]]) -> None:
    """Shopify REST: admitted work over any prefix ≤ capacity + leak_rate x elapsed."""
    clock = SimClock(START)
    bucket = LeakyBucket(clock, capacity=40, leak_rate=2)
    admitted = 0.0
    for wait, _size in run:
        clock.advance(wait)
        decision = bucket.acquire()
        assert 0 <= bucket.level <= 40 + 1e-6
        if decision.allowed:
            admitted += 1
        else:
            assert decision.retry_after > 0
            assert decision.retry_after_header == str(max(1, math.ceil(decision.retry_after)))
        assert admitted <= 40 + 2 * clock.elapsed() + 1e-6


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.floats(0.1, 30, allow_nan=False))
def test_leaky_bucket_retry_after_is_enough(fill: int, idle: float) -> None:
    clock = SimClock(START)
    bucket = LeakyBucket(clock, capacity=40, leak_rate=2)
    for _ in range(40):
        assert bucket.acquire().allowed
    refused = bucket.acquire()
    assert not refused.allowed
    clock.advance(refused.retry_after)
    assert bucket.acquire().allowed


@settings(max_examples=150, deadline=None)
@given(steps)
def test_cost_bucket_spends_what_it_has(run: list[tuple[float, int]]) -> None:
    """Shopify GraphQL: a query runs only if its requested cost is available; refunds of
    requested-minus-actual never push the bucket over its maximum."""
    clock = SimClock(START)
    bucket = CostBucket(clock, maximum=100, restore_rate=10)
    for wait, cost in run:
        clock.advance(wait)
        before = bucket.available
        decision = bucket.spend(cost)
        if decision.allowed:
            assert before + 1e-6 >= cost
            bucket.refund(cost // 2)
        else:
            assert before < cost
            clock.advance(decision.retry_after)
            assert bucket.spend(cost).allowed
        assert 0 <= bucket.available <= 100 + 1e-6
        status = decision.throttle_status()
        assert status["maximumAvailable"] == 100 and status["restoreRate"] == 10


def test_cost_bucket_refuses_forever_what_can_never_fit() -> None:
    bucket = CostBucket(SimClock(START), maximum=1000, restore_rate=50)
    decision = bucket.spend(1001)
    assert not decision.allowed and math.isinf(decision.retry_after)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4, allow_nan=False), min_size=1, max_size=300))
def test_fixed_window_admits_at_most_limit_per_window(waits: list[float]) -> None:
    """HubSpot: at most 100 per aligned 10-second window, and the window resets."""
    clock = SimClock(START)
    window = FixedWindow(clock, limit=7, window=10)
    per_window: dict[int, int] = {}
    for wait in waits:
        clock.advance(wait)
        decision = window.acquire()
        key = math.floor(clock.now().timestamp() / 10)
        if decision.allowed:
            per_window[key] = per_window.get(key, 0) + 1
        else:
            assert per_window.get(key, 0) == 7
            assert 0 < decision.retry_after <= 10
        assert per_window.get(key, 0) <= 7


def test_fixed_window_resets_after_retry_after() -> None:
    clock = SimClock(START)
    window = FixedWindow(clock, limit=100, window=10)
    for _ in range(100):
        assert window.acquire().allowed
    refused = window.acquire()
    assert not refused.allowed and refused.remaining == 0
    clock.advance(refused.retry_after)
    fresh = window.acquire()
    assert fresh.allowed and fresh.remaining == 99


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=0.2, allow_nan=False), min_size=1, max_size=400))
def test_multi_window_respects_burst_and_steady(waits: list[float]) -> None:
    """Klaviyo: 75/s burst and 750/min steady, both at once (scaled down 1:15 here)."""
    clock = SimClock(START)
    burst = FixedWindow(clock, limit=5, window=1)
    steady = FixedWindow(clock, limit=50, window=60)
    both = MultiWindow([burst, steady])
    seconds: dict[int, int] = {}
    minutes: dict[int, int] = {}
    for wait in waits:
        clock.advance(wait)
        t = clock.now().timestamp()
        if both.acquire().allowed:
            seconds[math.floor(t)] = seconds.get(math.floor(t), 0) + 1
            minutes[math.floor(t / 60)] = minutes.get(math.floor(t / 60), 0) + 1
    assert all(n <= 5 for n in seconds.values())
    assert all(n <= 50 for n in minutes.values())


def test_multi_window_refusal_names_the_longer_wait() -> None:
    clock = SimClock(START)
    both = MultiWindow(
        [FixedWindow(clock, limit=75, window=1), FixedWindow(clock, limit=750, window=60)]
    )
    admitted = 0
    for _ in range(20):  # 20 seconds at full burst = 1500 tries
        for _ in range(75):
            admitted += both.acquire().allowed
        clock.advance(1)
    assert admitted == 750
    refused = both.acquire()
    assert not refused.allowed and refused.retry_after > 1  # the minute window, not the second
