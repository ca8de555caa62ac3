"""ecrm.clock: a FrozenClock moves only when told, and its sleepers wake exactly then."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ecrm.clock import SYSTEM_CLOCK, Clock, FrozenClock
from tests.waiting import settle

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_frozen_clock_stands_still_until_advanced_or_set() -> None:
    clock = FrozenClock(T0)
    assert clock.now() == clock.now() == T0
    clock.advance(90)
    assert clock.now() == T0 + timedelta(seconds=90)
    clock.advance(timedelta(hours=1))
    assert clock.now() == T0 + timedelta(hours=1, seconds=90)
    clock.set(T0 - timedelta(days=1))
    assert clock.now() == T0 - timedelta(days=1)


def test_a_frozen_clock_keeps_utc_and_refuses_naive_times() -> None:
    tehran = timezone(timedelta(hours=3, minutes=30))
    clock = FrozenClock(datetime(2026, 3, 1, 15, 30, tzinfo=tehran))
    assert clock.now() == T0 and clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        clock.set(T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(T0.replace(tzinfo=None))
    assert clock.now() == T0


def test_a_frozen_clock_starts_at_a_fixed_aware_time() -> None:
    assert FrozenClock().now() == FrozenClock().now()
    assert FrozenClock().now().tzinfo is UTC


def test_the_system_clock_tells_aware_utc_time() -> None:
    clock: Clock = SYSTEM_CLOCK
    first, second = clock.now(), clock.now()
    assert first.tzinfo is UTC and first <= second


@pytest.mark.parametrize("clock", [FrozenClock(T0), SYSTEM_CLOCK], ids=["frozen", "system"])
async def test_sleep_until_a_time_already_due_returns_without_waiting(clock: Clock) -> None:
    # A zero timeout cancels the first suspension: only a call that never waits gets through.
    async with asyncio.timeout(0):
        await clock.sleep_until(clock.now())
        await clock.sleep_until(clock.now() - timedelta(minutes=5))


async def test_a_sleeper_wakes_when_the_clock_passes_its_time_and_not_before() -> None:
    clock = FrozenClock(T0)
    sleeper = asyncio.create_task(clock.sleep_until(T0 + timedelta(seconds=60)))
    await settle()
    assert not sleeper.done()
    clock.advance(59.999)
    await settle()
    assert not sleeper.done()
    clock.advance(0.001)
    async with asyncio.timeout(5):
        await sleeper
    assert clock.now() == T0 + timedelta(seconds=60)


async def test_one_advance_wakes_every_sleeper_that_is_due_and_only_those() -> None:
    clock = FrozenClock(T0)
    woke: list[int] = []

    async def sleep(seconds: int) -> None:
        await clock.sleep_until(T0 + timedelta(seconds=seconds))
        woke.append(seconds)

    tasks = [asyncio.create_task(sleep(s)) for s in (30, 10, 20)]
    await settle()
    clock.set(T0 + timedelta(seconds=25))
    await settle()
    assert sorted(woke) == [10, 20]
    clock.advance(5)
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)
    assert sorted(woke) == [10, 20, 30]


async def test_until_sleeping_returns_once_the_awaited_number_of_tasks_wait_on_the_clock() -> None:
    clock = FrozenClock(T0)
    watcher = asyncio.create_task(clock.until_sleeping(2))
    first = asyncio.create_task(clock.sleep_until(T0 + timedelta(seconds=1)))
    await settle()
    assert (clock.sleepers, watcher.done()) == (1, False)
    second = asyncio.create_task(clock.sleep_until(T0 + timedelta(seconds=2)))
    async with asyncio.timeout(5):
        await watcher
    assert clock.sleepers == 2
    clock.advance(1)
    async with asyncio.timeout(5):
        await first
    assert clock.sleepers == 1
    clock.advance(1)
    async with asyncio.timeout(5):
        await second
    assert clock.sleepers == 0


async def test_a_sleep_already_due_never_counts_as_sleeping() -> None:
    clock = FrozenClock(T0)
    await clock.sleep_until(T0)
    assert clock.sleepers == 0
    watcher = asyncio.create_task(clock.until_sleeping())
    await settle()
    assert not watcher.done()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
