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
