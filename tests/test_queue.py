"""The in-process queue waits on its clock: deferred jobs and retries run when the clock says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.worker import Retry

from ecrm.clock import FrozenClock
from ecrm.queue import InProcessQueue, JobFunction
from tests.waiting import settle

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def recording_queue(clock: FrozenClock, retry_after: float | None = None) -> tuple[InProcessQueue, list[Any]]:
    """A queue with one job, `record`, that notes (try, now, arg); on its first try it raises
    Retry(defer=retry_after) when that is given."""
    runs: list[Any] = []

    async def record(ctx: dict[str, Any], arg: str) -> None:
        runs.append((ctx["job_try"], clock.now(), arg))
        if retry_after is not None and ctx["job_try"] == 1:
            raise Retry(defer=retry_after)

    functions: dict[str, JobFunction] = {"record": record}
    return InProcessQueue(functions, max_tries=3, clock=clock), runs


async def test_a_job_without_a_delay_runs_at_once() -> None:
    clock = FrozenClock(T0)
    queue, runs = recording_queue(clock)
    assert await queue.enqueue("record", "now")
    async with asyncio.timeout(5):
        await queue.join()
    assert runs == [(1, T0, "now")]


async def test_a_job_deferred_until_a_time_runs_once_the_clock_passes_it() -> None:
    clock = FrozenClock(T0)
    queue, runs = recording_queue(clock)
    await queue.enqueue("record", "later", _defer_until=T0 + timedelta(hours=1))
    await settle()
    clock.advance(timedelta(minutes=59))
    await settle()
    assert runs == []
    clock.advance(timedelta(minutes=1))
    async with asyncio.timeout(5):
        await queue.join()
    assert runs == [(1, T0 + timedelta(hours=1), "later")]


async def test_a_job_deferred_by_seconds_waits_on_the_clock() -> None:
    clock = FrozenClock(T0)
    queue, runs = recording_queue(clock)
    await queue.enqueue("record", "soon", _defer_by=30)
    await settle()
    clock.advance(29)
    await settle()
    assert runs == []
    clock.advance(1)
    async with asyncio.timeout(5):
        await queue.join()
    assert runs == [(1, T0 + timedelta(seconds=30), "soon")]


async def test_a_retry_waits_on_the_clock_for_its_defer() -> None:
    clock = FrozenClock(T0)
    queue, runs = recording_queue(clock, retry_after=120)
    await queue.enqueue("record", "flaky")
    await settle()
    assert runs == [(1, T0, "flaky")]
    clock.advance(119)
    await settle()
    assert len(runs) == 1
    clock.advance(1)
    async with asyncio.timeout(5):
        await queue.join()
    assert runs == [(1, T0, "flaky"), (2, T0 + timedelta(seconds=120), "flaky")]
    assert queue.failed == []


async def test_a_job_id_already_waiting_is_not_enqueued_twice() -> None:
    clock = FrozenClock(T0)
    queue, runs = recording_queue(clock)
    assert await queue.enqueue("record", "first", _job_id="j", _defer_by=10)
    assert not await queue.enqueue("record", "second", _job_id="j")
    clock.advance(10)
    async with asyncio.timeout(5):
        await queue.join()
    assert [arg for _, _, arg in runs] == ["first"]
