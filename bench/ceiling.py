"""Raw ceilings measured across spawned processes: what a transport reaches with pre-built
messages and nothing else on the clock.

Each process builds its share of the messages first, reports ready and waits at a common start
line; the clock of each then runs from the start line to its last reply, and the ceiling's time
spans the first process's start to the last one's finish. The email, SMS and push ceilings
(``bench.raw_ceiling``, ``bench.send_sms``, ``bench.push``) differ only in what a process sends.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import resource
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import Any, TypeVar

T = TypeVar("T")
DEADLINE_S = 900.0


@dataclass(frozen=True)
class WorkerResult:
    """What one sending process did, between passing the start barrier and its last reply."""

    sent: int
    errors: int
    started: float
    finished: float
    cpu_s: float
    peak_rss_kb: int


@dataclass(frozen=True)
class RawResult:
    """The measured ceiling; ``seconds`` spans the first process's start to the last one's finish."""

    messages: int
    errors: int
    seconds: float
    processes: int
    connections: int
    cpu_ms_per_msg: tuple[float, ...]
    peak_rss_mb: float

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def client_cpu_ms(self) -> float:
        """Client CPU ms per message over all processes (their shares differ by one message at most)."""
        return statistics.fmean(self.cpu_ms_per_msg)

    def line(self) -> str:
        cpu = "/".join(f"{ms:.3f}" for ms in self.cpu_ms_per_msg)
        return (f"msgs={self.messages} seconds={self.seconds:.2f} msg_per_s={self.msgs_per_s:.0f} "
                f"client_cpu_ms_per_msg={cpu} peak_rss_mb={self.peak_rss_mb:.1f} errors={self.errors}")


def measure_in_processes(target: Callable[..., None], args: tuple[Any, ...], processes: int,
                         connections: int) -> RawResult:
    """Run ``target(index, *args, ready, go, results)`` in ``processes`` spawned processes. Each
    builds its messages, calls ``wait_for_start(index, ready, go)`` (in a thread) before its clock
    starts, and puts one ``WorkerResult`` on ``results``."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[WorkerResult] = ctx.Queue()
    workers = [ctx.Process(target=target, args=(index, *args, ready, go, results), daemon=True)
               for index in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _next(ready, workers)
        go.set()
        collected = [_next(results, workers) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
    return _summarise(collected, processes, connections)


def _next(channel: mp.Queue[T], workers: Sequence[BaseProcess]) -> T:
    """The next item from a worker, failing fast if any worker died instead of sending it."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            return channel.get(timeout=0.5)
        except queue.Empty:
            if any(worker.exitcode not in (None, 0) for worker in workers):
                raise RuntimeError("a sending process failed; see its traceback above") from None
    raise TimeoutError("sending processes did not answer in time")


def _summarise(collected: list[WorkerResult], processes: int, connections: int) -> RawResult:
    seconds = max(r.finished for r in collected) - min(r.started for r in collected)
    return RawResult(
        messages=sum(r.sent for r in collected),
        errors=sum(r.errors for r in collected),
        seconds=seconds,
        processes=processes,
        connections=connections,
        cpu_ms_per_msg=tuple(r.cpu_s * 1000 / r.sent if r.sent else 0.0 for r in collected),
        peak_rss_mb=max(r.peak_rss_kb for r in collected) / 1024,
    )


def wait_for_start(index: int, ready: mp.Queue[int], go: EventType) -> None:
    """Report this process ready and wait for every other one (blocking: run it in a thread)."""
    ready.put(index)
    if not go.wait(DEADLINE_S):
        raise TimeoutError("no start signal")


def run_sender(coro: Coroutine[Any, Any, WorkerResult], use_uvloop: bool = True) -> WorkerResult:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """A sending process's clock, started at the start line: wall time and this process's CPU."""

    def __init__(self) -> None:
        self.started, self.cpu_started = time.monotonic(), process_cpu_seconds()
        self.finished, self.cpu_s = self.started, 0.0

    def stop(self) -> None:
        """At the last reply; closing connections afterwards is not on the clock."""
        self.finished, self.cpu_s = time.monotonic(), process_cpu_seconds() - self.cpu_started

    def result(self, sent: int, errors: int) -> WorkerResult:
        """What this process did between start and stop, with its peak RSS so far."""
        return WorkerResult(sent, errors, self.started, self.finished, self.cpu_s,
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def median_run(runs: Sequence[T], rate: Callable[[T], float]) -> tuple[T, list[T]]:
    """The run with the median rate (the lower one of an even count), and all runs slowest first.
    One ceiling swings by up to ±20% on a shared machine, so a single one mostly measures the swing."""
    ordered = sorted(runs, key=rate)
    return ordered[(len(ordered) - 1) // 2], ordered
