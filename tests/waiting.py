"""Wait for something another task or process does, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


async def settle() -> None:
    """Let every task that is ready run, e.g. the sleepers a FrozenClock just woke (this only
    yields to the loop; no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)
