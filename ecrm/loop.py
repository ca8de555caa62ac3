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
    manager's stop) is handled as Ctrl-C: the main task is cancelled, so messages in flight
    finish and their outcomes are recorded, and KeyboardInterrupt comes out as with Ctrl-C."""
    use_fast_loop()
    with asyncio.Runner() as runner:
        if sigterm_as_sigint:
            runner.get_loop().add_signal_handler(signal.SIGTERM, signal.raise_signal, signal.SIGINT)
        return runner.run(coro)
