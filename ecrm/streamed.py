"""The items of a generator made away from the event loop, received in order, the next one asked
for while the consumer handles this one.

`in_thread` runs the generator in a worker thread, for small jobs. `in_child_process` runs it in
a process of its own: work that holds the GIL most of its time (reading and validating a large
CSV import: ~17 us of CPU a row) otherwise takes turns with the event loop of its process, and
the loop with it, on one core; in a child it has a core of its own. The child is started fresh
(the spawn method: forking a process that runs an event loop and threads copies their state in
mid-flight), sends each item pickled through a pipe and waits while the parent has not taken the
one before (a pipe holds ~64 KB), so memory stays flat however many items come.

The child never outlives the stream: leaving the stream early, or failing, ends it. What ends
the child surfaces in the parent, never as a wait that does not end: a SpecError as itself,
any other exception as a WorkerProcessError with the child's traceback, a child that dies
without a word (killed, out of memory) as a WorkerProcessError naming its exit code or signal.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import traceback
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager, closing
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from ecrm.errors import SpecError, WorkerProcessError

T = TypeVar("T")
_END = object()  # what a receive gives once the generator is done
_ITEM, _DONE, _SPEC, _FAILED = range(4)  # the kinds of message a child sends
REAP_SECONDS = 10.0  # how long a child may take to end before it is killed


class Stream(Generic[T]):
    """The items of a blocking `receive` run in a worker thread (`_END` once there are no more),
    one asked for ahead."""

    def __init__(self, receive: Callable[[], Any]) -> None:
        self._receive = receive
        self._pending: asyncio.Future[Any] | None = None
        self.ended = False  # every item was received, or a receive failed

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        if self.ended:
            raise StopAsyncIteration
        pending = self._pending or self._ask()
        self._pending = None
        try:
            # shielded: a cancelled consumer leaves the thread's receive to `settle`
            item = await asyncio.shield(pending)
        except BaseException:
            self._pending = None if pending.done() else pending
            self.ended = pending.done()
            raise
        if item is _END:
            self.ended = True
            raise StopAsyncIteration
        self._pending = self._ask()
        return item  # type: ignore[no-any-return]

    def _ask(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(None, self._receive)

    async def settle(self) -> None:
        """Wait for the receive in flight, if any, to return or fail (once its source is
        stopped, it does promptly)."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None


@asynccontextmanager
async def in_thread(produce: Callable[..., Generator[T, None, None]], *args: Any) -> AsyncIterator[Stream[T]]:
    """The items of `produce(*args)`, made in worker threads one after the other."""
    items = produce(*args)
    stream: Stream[T] = Stream(lambda: next(items, _END))
    try:
        yield stream
    finally:
        await stream.settle()
        await asyncio.to_thread(items.close)


@asynccontextmanager
async def in_child_process(produce: Callable[..., Generator[T, None, None]], *args: Any, name: str = "worker"
                           ) -> AsyncIterator[Stream[T]]:
    """The items of `produce(*args)` (a module-level function, and arguments that pickle), made
    in a child process called `name` in messages."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    try:
        process = context.Process(target=_serve, args=(sender, produce, args), name=name, daemon=True)
        try:
            process.start()
        finally:
            sender.close()  # the child's end: with no copy of it here, the pipe ends when the child does
        stream: Stream[T] = Stream(lambda: _received(receiver, process))
        try:
            yield stream
        finally:
            if not stream.ended:
                process.terminate()
            await stream.settle()
            await asyncio.to_thread(_reap, process)
    finally:
        receiver.close()


def _received(receiver: Connection, process: BaseProcess) -> Any:
    """The child's next item, `_END`, or what went wrong, raised."""
    try:
        kind, payload = receiver.recv()
    except (EOFError, OSError):  # OSError: the pipe ended within a message
        process.join(REAP_SECONDS)
        raise WorkerProcessError(f"the {process.name} process ended before finishing ({_exit(process)})") from None
    if kind == _ITEM:
        return payload
    if kind == _DONE:
        return _END
    if kind == _SPEC:
        raise SpecError(payload)
    raise WorkerProcessError(f"the {process.name} process failed:\n{payload}")


def _exit(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "it still runs"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _reap(process: BaseProcess) -> None:
    """Wait for the child to end, killing it if it takes too long."""
    process.join(REAP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def _serve(sender: Connection, produce: Callable[..., Generator[Any, None, None]], args: tuple[Any, ...]) -> None:
    """The child: send each item `produce(*args)` makes, then that it is done, or what failed.
    Ctrl-C reaches the parent too, which ends the child: the child ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            with closing(produce(*args)) as items:
                for item in items:
                    sender.send((_ITEM, item))
            sender.send((_DONE, None))
        except SpecError as exc:
            sender.send((_SPEC, exc.problems))
        except Exception:
            sender.send((_FAILED, traceback.format_exc()))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped listening: nobody to tell
    finally:
        sender.close()
