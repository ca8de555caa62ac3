"""The event loop ecrm runs on: uvloop where it is installed (it roughly halves the loop's and
the SMTP client's CPU per message), asyncio's own loop elsewhere."""

from __future__ import annotations

import asyncio
import signal
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


def run(coro: Coroutine[Any, Any, T], *, sigterm_as_sigint: bool = False) -> T:
    """Run `coro` to the end. With `sigterm_as_sigint`, SIGTERM (a plain `kill`, a service
    manager's stop) is handled as Ctrl-C: `coro` is cancelled, so messages in flight finish and
    their outcomes are recorded, and KeyboardInterrupt comes out as with Ctrl-C (a second SIGTERM
    raises it at once)."""
    use_fast_loop()
    with asyncio.Runner() as runner:
        return runner.run(_until_sigterm(coro) if sigterm_as_sigint else coro)


async def _until_sigterm(coro: Coroutine[Any, Any, T]) -> T:
    """`coro`, cancelled by SIGTERM. SIGTERM does not go through SIGINT: a process started in
    the background by a shell script (`ecrm campaign launch ... &`) inherits SIGINT ignored, and
    so ignored SIGTERM too when it was raised as SIGINT."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        if terminated:
            raise KeyboardInterrupt
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await task
    except asyncio.CancelledError:
        if terminated and task.cancelled():
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
