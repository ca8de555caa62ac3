"""A generator's items made in a worker thread or a child process: in order, and whatever ends
the child surfaces in the parent, never as a wait that does not end."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from ecrm.errors import SpecError, SpecProblem, WorkerProcessError
from ecrm.streamed import Stream, in_child_process, in_thread

Streaming = Callable[..., AbstractAsyncContextManager[Stream[int]]]
BOTH = pytest.mark.parametrize("streamed", [in_thread, in_child_process])


def counting(n: int) -> Generator[int, None, None]:
    yield from range(n)


def failing(after: int) -> Generator[int, None, None]:
    yield from range(after)
    raise ValueError("the disk caught fire")


def refusing() -> Generator[int, None, None]:
    yield 1
    raise SpecError([SpecProblem("people.csv", 3, "email", "not an address")])


def dying(code: int) -> Generator[int, None, None]:
    yield 1
    os._exit(code)


def killed() -> Generator[int, None, None]:
    yield 1
    os.kill(os.getpid(), signal.SIGKILL)
    yield 2


def endless(marker: str) -> Generator[int, None, None]:
    """Items forever, far more than a pipe holds; `marker` is written when the generator is closed."""
    try:
        while True:
            yield 0
    finally:
        Path(marker).write_text("closed")


async def _all(stream: AsyncIterator[int]) -> list[int]:
    return [item async for item in stream]


@BOTH
async def test_the_items_come_in_order_and_the_child_is_gone_after(streamed: Streaming) -> None:
    async with streamed(counting, 5000) as items:
        assert await _all(items) == list(range(5000))
        assert [item async for item in items] == []  # ended: stays ended
    assert multiprocessing.active_children() == []


@BOTH
async def test_an_exception_in_the_generator_surfaces_with_its_message(streamed: Streaming) -> None:
    got: list[int] = []
    with pytest.raises((ValueError, WorkerProcessError), match="the disk caught fire") as raised:
        async with streamed(failing, 3) as items:
            async for item in items:
                got.append(item)
    assert got == [0, 1, 2]
    if streamed is in_child_process:  # with the child's traceback, naming the process
        assert raised.type is WorkerProcessError
        assert "the worker process failed" in str(raised.value) and "ValueError" in str(raised.value)


@BOTH
async def test_a_spec_error_comes_through_as_itself(streamed: Streaming) -> None:
    with pytest.raises(SpecError) as raised:
        async with streamed(refusing) as items:
            await _all(items)
    assert raised.value.problems == [SpecProblem("people.csv", 3, "email", "not an address")]


@pytest.mark.parametrize(("produce", "args", "ending"), [
    (dying, (3,), r"ended before finishing \(exit code 3\)"),
    (killed, (), r"ended before finishing \(killed by signal SIGKILL\)"),
])
async def test_a_child_that_dies_fails_the_stream_naming_how(
        produce: Callable[..., Generator[int, None, None]], args: tuple[int, ...], ending: str) -> None:
    got: list[int] = []
    with pytest.raises(WorkerProcessError, match=ending):
        async with in_child_process(produce, *args) as items:
            async for item in items:
                got.append(item)
    assert got == [1]
    assert multiprocessing.active_children() == []


async def test_a_child_killed_while_it_waits_on_the_parent_fails_the_stream() -> None:
    """Killed mid-stream, with items still in the pipe: those come, then the failure."""
    with pytest.raises(WorkerProcessError, match="killed by signal SIGKILL"):
        async with in_child_process(counting, 10**9) as items:
            async for item in items:
                if item == 0:
                    (child,) = multiprocessing.active_children()
                    assert child.pid is not None
                    os.kill(child.pid, signal.SIGKILL)


@BOTH
async def test_leaving_early_ends_the_generator(streamed: Streaming, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    async with streamed(endless, str(marker)) as items:
        async for _ in items:
            break
    if streamed is in_thread:
        assert marker.read_text() == "closed"
    assert multiprocessing.active_children() == []


async def test_a_consumer_cancelled_while_it_waits_ends_the_child_at_once() -> None:
    started = time.monotonic()

    async def consume() -> None:
        async with in_child_process(slow, 60.0) as items:
            await _all(items)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), 1.5)
    assert multiprocessing.active_children() == []
    assert time.monotonic() - started < 10


async def test_a_consumer_cancelled_while_it_waits_lets_the_thread_finish_its_item_first() -> None:
    """A thread cannot be stopped: its item is awaited, then the generator closed."""
    async def consume() -> None:
        async with in_thread(slow, 1.0) as items:
            await _all(items)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), 0.2)
    assert time.monotonic() - started >= 1.0


def slow(seconds: float) -> Generator[int, None, None]:
    yield 1
    time.sleep(seconds)
    yield 2
