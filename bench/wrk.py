"""The wrk load client of `bench.ingest` (`--client wrk`).

wrk (https://github.com/wg/wrk) is a load generator in C with a LuaJIT scripting hook; it costs a
fraction of the Python client's CPU per request, which on two shared cores is CPU the server gets
back. Install it with `apt-get install wrk` (Debian bookworm has 4.1.0).

The requests are built in Python by the scenario's body function (the same one the Python
client calls, so the same bodies, headers and signatures), written to one file per wrk thread
(`write_requests`), and `bench/ingest_wrk.lua` makes each thread cycle through its file and
count the answers by status; when the load's time is over they send nothing more, and once
every answer is in `run` stops wrk. `parse_summary` reads what the script's `done()` prints.
`run` tells its caller when the load starts (after every thread read its file), so that CPU is
measured over the load alone; the CPU wrk spent loading its files is not counted.

wrk's latency percentiles are its own: it "corrects" its histogram for coordinated omission
(each answer slower than twice the mean time a connection takes per request adds samples), so
its p99 is somewhat above the Python client's plain p99 when the tail is long.
"""

from __future__ import annotations

import asyncio
import random
import resource
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psutil

SCRIPT = Path(__file__).with_name("ingest_wrk.lua")
MARK = "ecrm-wrk "
DRAINED = MARK + "drained "
DRAIN_LIMIT = 30  # seconds wrk may wait for the requests in flight when the load ends
Draw = Callable[[random.Random], tuple[str, bytes, dict[str, str]]]  # path, body, extra headers


class WrkFailed(RuntimeError):
    """wrk exited with an error, its script failed, or it printed no summary."""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def draw_requests(draw: Draw, rng: random.Random, count: int, headers: dict[str, str],
                  unique: str | None = None, seen: set[str] | None = None) -> Iterator[Request]:
    """`count` requests drawn from `draw` with the common `headers` first; where `unique` names
    a header, a draw whose value of it is in `seen` (every value given out is added) is drawn
    again, so no two requests carry the same one."""
    seen = set() if seen is None else seen
    made = 0
    while made < count:
        path, body, extra = draw(rng)
        request = Request(path, {**headers, **extra}, body)
        if unique is not None:
            value = request.headers[unique]
            if value in seen:
                continue
            seen.add(value)
        made += 1
        yield request


def write_requests(file: BinaryIO, requests: Sequence[Request], unique: str | None = None) -> None:
    """Write the file one thread of `ingest_wrk.lua` reads."""
    file.write(f"{unique or '-'} {len(requests)}\n".encode())
    for request in requests:
        lines = [request.path, str(len(request.headers))]
        for name, value in request.headers.items():
            lines += [name, value]
        lines.append(str(len(request.body)))
        if any("\n" in line or "\r" in line or not line for line in lines):
            raise ValueError(f"a path, header name or value is empty or holds a line break: {lines!r}")
        file.write("\n".join(lines).encode() + b"\n" + request.body)


@dataclass
class WrkSummary:
    """One wrk run as the script's `done()` reports it."""

    seconds: float
    answered: int
    sent: int  # requests sent: the answered ones and any still in flight when wrk stopped
    pool: int  # distinct requests in the files
    p50_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    statuses: dict[int, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        """Answers that are not 2xx, and requests that failed on the socket or timed out."""
        return self.answered - self.ok + sum(self.socket_errors.values())

    @property
    def unanswered(self) -> int:
        return max(0, self.sent - self.answered)

    @property
    def repeated(self) -> int:
        """Requests that were sent a second time (or more) because the files ran out."""
        return max(0, self.sent - self.pool)


def parse_summary(output: str) -> WrkSummary:
    """The summary in wrk's output (the `ecrm-wrk ...` lines of the script's `done()`)."""
    values: dict[str, list[str]] = {}
    statuses: dict[int, int] = {}
    samples = []
    for line in output.splitlines():
        if not line.startswith(MARK):
            continue
        key, _, rest = line[len(MARK):].partition(" ")
        if key == "status":
            status, n = rest.split()
            statuses[int(status)] = statuses.get(int(status), 0) + int(n)
        elif key == "sample":
            samples.append(rest)
        else:
            values[key] = rest.split()
    needed = ("duration_us", "answered", "sent", "pool", "latency_us", "socket_errors")
    missing = [key for key in needed if key not in values]
    if missing:
        raise WrkFailed(f"wrk printed no {', '.join(missing)} (did the script run?):\n{output[-2000:]}")
    p50, p99 = (int(v) / 1000 for v in values["latency_us"])
    connect, read, write, timeout = (int(v) for v in values["socket_errors"])
    return WrkSummary(seconds=int(values["duration_us"][0]) / 1e6, answered=int(values["answered"][0]),
                      sent=int(values["sent"][0]), pool=int(values["pool"][0]), p50_ms=p50, p99_ms=p99,
                      socket_errors={"connect": connect, "read": read, "write": write, "timeout": timeout},
                      statuses=statuses, samples=samples)


@dataclass
class WrkRun:
    summary: WrkSummary
    cpu_seconds: float  # wrk's user + system time once the load started


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command(url: str, prefix: Path, threads: int, connections: int, seconds: int) -> list[str]:
    """wrk with line-buffered output (stdbuf), so that its lines arrive as they are printed.
    The timeout is wrk's latency histogram's limit too: a longer answer would leave it uncounted."""
    binary, stdbuf = wrk_binary(), shutil.which("stdbuf")
    if binary is None or stdbuf is None:
        raise WrkFailed("no wrk (apt-get install wrk) or no stdbuf (coreutils) on PATH")
    return [stdbuf, "-oL", binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds + DRAIN_LIMIT}s",
            "--timeout", "10s", "-s", str(SCRIPT), url, "--", str(prefix), str(seconds)]


async def run(url: str, prefix: Path, threads: int, connections: int, seconds: int,
              started: Callable[[], None] = lambda: None) -> WrkRun:
    """Run wrk over the request files `prefix.1` .. `prefix.<threads>` for `seconds`, then until
    the requests in flight are answered; `started()` is called when its threads have read their
    files and the load begins. The caller must have no other child process exit meanwhile
    (wrk's CPU is read from this process's children's usage)."""
    before = children_cpu()
    process = await asyncio.create_subprocess_exec(*command(url, prefix, threads, connections, seconds),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.create_task(process.stderr.read())
    lines, loading_cpu, drained = [], 0.0, 0
    try:
        async for raw in process.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith("Running"):
                times = psutil.Process(process.pid).cpu_times()
                loading_cpu = times.user + times.system
                started()
            elif line.startswith(DRAINED):
                drained += 1
                if drained == threads:
                    process.send_signal(signal.SIGINT)  # wrk stops, prints its summary and runs done()
        stderr = (await errors).decode(errors="replace")
        returncode = await process.wait()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    cpu = children_cpu() - before - loading_cpu
    if returncode or stderr.strip():
        raise WrkFailed(f"wrk exited with {returncode}: {stderr[-2000:]}{''.join(lines)[-2000:]}")
    return WrkRun(parse_summary("".join(lines)), cpu)
