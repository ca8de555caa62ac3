"""`MapKicker`: the webhooks' mapping job is queued at once after a quiet spell, at most once
per interval while commits go on, and always once after the last commit."""

from __future__ import annotations

import asyncio

from ecrm.api.webhook_writer import MapKicker


class Calls:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def test_a_poke_after_a_quiet_spell_queues_a_job_at_once() -> None:
    calls = Calls()
    kicker = MapKicker(calls, interval=10.0)
    kicker.poke()
    await asyncio.sleep(0.01)
    assert calls.count == 1
    await kicker.flush()
    assert calls.count == 1  # nothing poked since: nothing more to queue


async def test_pokes_within_an_interval_share_one_job_after_it() -> None:
    calls = Calls()
    kicker = MapKicker(calls, interval=0.2)
    kicker.poke()
    await asyncio.sleep(0.01)
    for _ in range(50):
        kicker.poke()
        await asyncio.sleep(0.001)
    assert calls.count == 1
    await asyncio.sleep(0.3)
    assert calls.count == 2  # the pokes of the interval, in one job when it ended
    await asyncio.sleep(0.3)
    assert calls.count == 2


async def test_flush_queues_what_pokes_wait_for_now() -> None:
    calls = Calls()
    kicker = MapKicker(calls, interval=60.0)
    kicker.poke()
    await asyncio.sleep(0.01)
    kicker.poke()
    await asyncio.wait_for(kicker.flush(), 1.0)  # not after the minute
    assert calls.count == 2
    kicker.poke()  # and it works again after a flush
    await asyncio.sleep(0.01)
    assert calls.count == 3
    await asyncio.wait_for(kicker.flush(), 1.0)
