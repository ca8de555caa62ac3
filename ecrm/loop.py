"""The event loop ecrm runs on: uvloop where it is installed (it roughly halves the loop's and
the SMTP client's CPU per message), asyncio's own loop elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def use_fast_loop() -> bool:
    """Make new event loops uvloop loops; returns whether uvloop is in use."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(coro: Coroutine[Any, Any, T]) -> T:
    use_fast_loop()
    return asyncio.run(coro)
