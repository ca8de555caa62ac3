"""Time as a dependency: every stage reads "now" from a `Clock` handed to it (the runtime's, the
API app's), never from `datetime.now`, so tests can freeze time and move it on.

- `SystemClock`: the real time, in UTC; `sleep_until` sleeps on the event loop.
- `FrozenClock`: stands still until a test calls `advance` or `set`; `sleep_until` wakes the
  sleepers whose time has come, so a deferred job runs when the test moves the clock past it,
  with no real waiting.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` is at or past `when` (at once if it already is)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        # The loop's timers run on the monotonic clock and may fire a clock tick early, and the
        # wall clock can be stepped: sleep again until the wall clock has really reached `when`.
        delay = (when - self.now()).total_seconds()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = (when - self.now()).total_seconds()


class FrozenClock:
    """A clock for tests: `now()` changes only through `advance` and `set`.

    `until_sleeping` tells a test that the code under test has reached its wait, so the test
    can check nothing happened yet before it moves the clock, without polling or sleeping.
    """

    def __init__(self, at: datetime | None = None) -> None:
        self._now = _utc(at or datetime(2026, 1, 1, 9, 0, tzinfo=UTC))
        self._moved = asyncio.Event()
        self._sleepers = 0
        self._sleepers_changed = asyncio.Event()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting in `sleep_until` for a time still to come."""
        return self._sleepers

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = _utc(at)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def advance(self, by: timedelta | float) -> None:
        self.set(self._now + (by if isinstance(by, timedelta) else timedelta(seconds=by)))

    async def sleep_until(self, when: datetime) -> None:
        if self._now >= when:
            return
        self._count_sleepers(1)
        try:
            while self._now < when:
                await self._moved.wait()
        finally:
            self._count_sleepers(-1)

    async def until_sleeping(self, count: int = 1) -> None:
        """Return once at least `count` tasks are waiting in `sleep_until`."""
        while self._sleepers < count:
            await self._sleepers_changed.wait()

    def _count_sleepers(self, change: int) -> None:
        self._sleepers += change
        changed, self._sleepers_changed = self._sleepers_changed, asyncio.Event()
        changed.set()


def _utc(at: datetime) -> datetime:
    # A naive time would be read as the machine's local time: refuse it rather than guess.
    if at.tzinfo is None:
        raise ValueError("a FrozenClock needs an aware time")
    return at.astimezone(UTC)


SYSTEM_CLOCK = SystemClock()
