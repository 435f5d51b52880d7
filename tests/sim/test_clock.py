"""SimClock and Scheduler: simulated time moves only as told, and never backwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from handoff.clock import Clock
from handoff.sim.clock import Scheduler, SimClock

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_manual_clock_moves_only_when_told() -> None:
    clock: Clock = SimClock(START)
    assert clock.now() == START
    sim = SimClock(START)
    assert sim.advance(90) == START + timedelta(seconds=90)
    assert sim.advance(timedelta(hours=4)) == START + timedelta(hours=4, seconds=90)
    assert sim.advance_to(START) == START + timedelta(hours=4, seconds=90)  # never backwards
    assert sim.advance_to(START + timedelta(days=1)) == START + timedelta(days=1)
    with pytest.raises(ValueError):
        sim.advance(-1)
    with pytest.raises(ValueError):
        SimClock(datetime(2026, 1, 1))  # naive


def test_flowing_clock_runs_at_its_speed() -> None:
    mono = FakeMonotonic()
    clock = SimClock(START, speed=3600, monotonic=mono)  # one wall second = one simulated hour
    mono.t += 2
    assert clock.now() == START + timedelta(hours=2)
    clock.advance(60)
    assert clock.now() == START + timedelta(hours=2, minutes=1)
    clock.set_speed(0)  # freeze without a jump
    mono.t += 100
    assert clock.now() == START + timedelta(hours=2, minutes=1)
    assert clock.real_seconds(5) == 5  # manual: vendor timeouts are real seconds
    clock.set_speed(10)
    assert clock.real_seconds(5) == 0.5  # scaled by the speed factor


def test_sleep_jumps_when_manual() -> None:
    clock = SimClock(START)
    asyncio.run(clock.sleep(timedelta(hours=24)))
    assert clock.now() == START + timedelta(hours=24)


def test_scheduler_runs_in_time_order_and_jumps() -> None:
    clock = SimClock(START)
    scheduler = Scheduler(clock)
    seen: list[tuple[str, datetime]] = []

    def note(label: str) -> None:
        seen.append((label, clock.now()))

    scheduler.at(START + timedelta(hours=4), lambda: note("c"))
    scheduler.at(START + timedelta(seconds=5), lambda: note("a"))
    scheduler.at(START + timedelta(seconds=5), lambda: note("b"))  # same time: insertion order

    async def retry() -> None:
        note("d")
        scheduler.after(timedelta(hours=20), lambda: note("e"))

    scheduler.at(START + timedelta(hours=5), retry)
    assert asyncio.run(scheduler.run()) == 5
    assert [label for label, _ in seen] == ["a", "b", "c", "d", "e"]
    assert seen[-1][1] == START + timedelta(hours=25)
    assert clock.now() == START + timedelta(hours=25)


def test_scheduler_until_stops_and_sets_the_clock() -> None:
    clock = SimClock(START)
    scheduler = Scheduler(clock)
    ran: list[int] = []
    for hour in (1, 2, 3):
        scheduler.at(START + timedelta(hours=hour), lambda h=hour: ran.append(h))
    asyncio.run(scheduler.run(until=START + timedelta(hours=2, minutes=30)))
    assert ran == [1, 2]
    assert clock.now() == START + timedelta(hours=2, minutes=30)
    assert len(scheduler) == 1


def test_scheduler_batches_concurrently_within_a_window() -> None:
    clock = SimClock(START)
    scheduler = Scheduler(clock, concurrency=4, batch_window=60)
    active = 0
    peak = 0
    stamps: list[datetime] = []

    async def work() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        stamps.append(clock.now())
        await asyncio.sleep(0.01)
        active -= 1

    for second in (0, 10, 20, 30, 200):
        scheduler.at(START + timedelta(seconds=second), work)
    asyncio.run(scheduler.run())
    assert peak == 4
    assert stamps[:4] == [START] * 4  # the batch runs at the earliest due time
    assert stamps[4] == START + timedelta(seconds=200)


def test_scheduler_waits_for_a_flowing_clock() -> None:
    clock = SimClock(START, speed=2000)  # 100 simulated seconds take 0.05 wall seconds
    scheduler = Scheduler(clock)
    seen: list[tuple[int, datetime]] = []
    for second in (100, 40):
        due = START + timedelta(seconds=second)
        scheduler.at(due, lambda s=second: seen.append((s, clock.now())))
    asyncio.run(scheduler.run())
    assert [s for s, _ in seen] == [40, 100]
    assert all(at >= START + timedelta(seconds=s) for s, at in seen)
