"""Wait for something another task or process does, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 20.0) -> None:
    """Wait until `check()` is true (it may ask the database), failing with `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


async def settle() -> None:
    """Let every task that is ready run, e.g. the sleepers a FrozenClock just woke (this only
    yields to the loop; no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)
