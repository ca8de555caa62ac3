"""Raw transport ceiling: pre-built messages through the SMTP client to the lean sink, no DB, queue or rendering.

Benchmark stage. It bounds what the email send path can reach on this box: N distinct ~3 KB
multipart/alternative messages (personalised To, List-Unsubscribe one-click, utf-8 en/fa/th bodies) are
built once per process before the clock starts, then sent over C reused connections in each of P
spawned processes, through the same client the send jobs use: ecrm's ``SmtpEmail`` adapter and
``send_many`` (aiosmtplib sets the session up; RFC 2920 pipelining sends). ``--client sendmail`` sends
with plain aiosmtplib ``SMTP.sendmail`` instead, for comparison. Run ``python -m bench.raw_ceiling``
from the repository root: it starts ``python -m ecrm.peers.smtp_sink`` in its own process, measures,
checks the sink counted exactly one message per recipient, and prints one line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import psutil

from ecrm.channels.base import send_many
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.errors import SendError
from ecrm.messages import OutgoingEmail
from ecrm.settings import SmtpSettings

ROOT = Path(__file__).resolve().parent.parent
SENDER = "news@shop.example.test"
MAIL_OPTIONS = ["BODY=8BITMIME"]
BOUNDARY = "=_ecrm_alt_7f3a9c"
DEADLINE_S = 900.0
T = TypeVar("T")
SUBJECT = Header("Your weekly picks · پیشنهادهای هفته · ข้อเสนอประจำสัปดาห์", "utf-8").encode()
DATE = formatdate(0, usegmt=True)
PARAGRAPHS = (
    "New arrivals are in: linen shirts, canvas sneakers and a travel mug that keeps coffee hot for hours.",
    "محصولات تازه رسیدند: پیراهن کتان، کفش کتانی و لیوان سفری که قهوه را ساعت‌ها گرم نگه می‌دارد.",  # noqa: RUF001
    "สินค้าใหม่มาแล้ว: เสื้อผ้าลินิน รองเท้าผ้าใบ และแก้วเดินทางที่เก็บความร้อนของกาแฟได้นานหลายชั่วโมง",
)
TEXT_BODY = "\r\n\r\n".join(PARAGRAPHS)
HTML_BODY = "\r\n".join(f'<p style="margin:0 0 12px;font-family:sans-serif">{p}</p>' for p in PARAGRAPHS * 2)
TEMPLATE = (
    "From: Shop <{sender}>\r\nTo: {name} <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n"
    "Message-ID: <{token}@shop.example.test>\r\nMIME-Version: 1.0\r\n"
    "List-Unsubscribe: <https://shop.example.test/u/{token}>, <mailto:unsubscribe+{token}@shop.example.test>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Hi {name},\r\n\r\n{text}\r\n\r\nUnsubscribe: https://shop.example.test/u/{token}\r\n"
    "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    '<!doctype html><html><body><h1 style="font-family:sans-serif">Hi {name}</h1>\r\n{html}\r\n'
    '<p><a href="https://shop.example.test/u/{token}">Unsubscribe</a></p></body></html>\r\n'
    "--{boundary}--\r\n"
)


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

    def line(self) -> str:
        cpu = "/".join(f"{ms:.3f}" for ms in self.cpu_ms_per_msg)
        return (f"msgs={self.messages} seconds={self.seconds:.2f} msg_per_s={self.msgs_per_s:.0f} "
                f"client_cpu_ms_per_msg={cpu} peak_rss_mb={self.peak_rss_mb:.1f} errors={self.errors}")


def recipient(i: int) -> str:
    return f"user{i:07d}@example.test"


def build_message(i: int) -> bytes:
    """Recipient ``i``'s message, as the wire bytes a pre-encoded MIME template would produce."""
    token = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=12).hexdigest()
    return TEMPLATE.format(
        sender=SENDER, name=f"Customer {i}", to=recipient(i), subject=SUBJECT, date=DATE, token=token,
        boundary=BOUNDARY, text=TEXT_BODY, html=HTML_BODY,
    ).encode("utf-8")


def measure_raw_ceiling(n: int, processes: int, connections: int, host: str, port: int,
                        *, use_uvloop: bool = True, client: str = "adapter") -> RawResult:
    """Send recipients ``0..n-1`` once each from ``processes`` spawned processes, ``connections`` each."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[WorkerResult] = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(index, n, processes, connections, host, port, use_uvloop,
                                                  client, ready, go, results), daemon=True)
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


def _worker(index: int, n: int, processes: int, connections: int, host: str, port: int, use_uvloop: bool,
            client: str, ready: mp.Queue[int], go: EventType, results: mp.Queue[WorkerResult]) -> None:
    messages = [(recipient(i), build_message(i)) for i in range(index, n, processes)]
    send_all = _send_through_adapter if client == "adapter" else _send_all
    results.put(_run(send_all(messages, connections, host, port, lambda: _ready(index, ready, go)), use_uvloop))


def _ready(index: int, ready: mp.Queue[int], go: EventType) -> None:
    """Report this worker connected and wait for every other one (blocking: run it in a thread)."""
    ready.put(index)
    if not go.wait(DEADLINE_S):
        raise TimeoutError("no start signal")


def _run(coro: Coroutine[Any, Any, WorkerResult], use_uvloop: bool) -> WorkerResult:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def _send_all(messages: list[tuple[str, bytes]], connections: int, host: str, port: int,
                    start_line: Callable[[], None]) -> WorkerResult:
    clients = [aiosmtplib.SMTP(hostname=host, port=port, local_hostname="bench.local", timeout=30)
               for _ in range(connections)]
    for client in clients:
        await client.connect()
        await client.ehlo()
    await asyncio.to_thread(start_line)
    started, cpu_started = time.monotonic(), _cpu_seconds()
    pending = iter(messages)
    async with asyncio.timeout(DEADLINE_S):
        errors = sum(await asyncio.gather(*(_pump(client, pending) for client in clients)))
    finished, cpu_s = time.monotonic(), _cpu_seconds() - cpu_started
    for client in clients:
        await client.quit()
    peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return WorkerResult(len(messages) - errors, errors, started, finished, cpu_s, peak_rss_kb)


async def _send_through_adapter(messages: list[tuple[str, bytes]], connections: int, host: str, port: int,
                                start_line: Callable[[], None]) -> WorkerResult:
    """The same path as ecrm's send jobs minus database, queue and rendering: `SmtpEmail` (the
    email channel adapter: pooled connections, RFC 2920 pipelining when offered) and `send_many`."""
    channel = SmtpEmail(SmtpSettings(host=host, port=port, connections=connections))
    await channel.warm_up()
    outgoing = [OutgoingEmail(SENDER, to, data, "") for to, data in messages]
    await asyncio.to_thread(start_line)
    started, cpu_started = time.monotonic(), _cpu_seconds()
    async with asyncio.timeout(DEADLINE_S):
        outcomes = await send_many(channel, outgoing)
    finished, cpu_s = time.monotonic(), _cpu_seconds() - cpu_started
    await channel.close()
    errors = sum(1 for outcome in outcomes if isinstance(outcome, SendError))
    peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return WorkerResult(len(messages) - errors, errors, started, finished, cpu_s, peak_rss_kb)


async def _pump(client: aiosmtplib.SMTP, pending: Iterator[tuple[str, bytes]]) -> int:
    """Send from the shared iterator until it is empty; ``timeout=None`` keeps ``wait_for`` off each reply."""
    errors = 0
    for to, message in pending:
        try:
            await client.sendmail(SENDER, [to], message, mail_options=MAIL_OPTIONS, timeout=None)
        except aiosmtplib.SMTPException:
            errors += 1
    return errors


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SinkProcess:
    """``python -m ecrm.peers.smtp_sink`` on a free loopback port, stopped with SIGTERM to collect its stats."""

    def __init__(self, stats_file: Path) -> None:
        self.stats_file = stats_file
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ecrm.peers.smtp_sink", "--port", "0", "--stats-file", str(stats_file)],
            stdout=subprocess.PIPE, cwd=ROOT, env=env,
        )
        self.port = self._read_port()
        self.ps = psutil.Process(self.process.pid)

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        timer = threading.Timer(30, self.process.kill)
        timer.start()
        banner = self.process.stdout.readline()
        timer.cancel()
        if not banner:
            raise RuntimeError("the SMTP sink did not start")
        return int(banner.rsplit(b":", 1)[1])

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> dict[str, Any]:
        """SIGTERM the sink and return what it wrote: ``SmtpSink.stats()`` plus ``per_recipient``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        stats: dict[str, Any] = json.loads(self.stats_file.read_text(encoding="utf-8"))
        return stats


def lost_and_duplicated(per_recipient: dict[str, int], expected: set[str]) -> tuple[int, int]:
    """Recipients the sink never saw, and messages beyond one per recipient (strangers count as duplicates)."""
    lost = sum(1 for address in expected if per_recipient.get(address, 0) == 0)
    duplicated = sum(count - 1 if address in expected else count for address, count in per_recipient.items())
    return lost, duplicated


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages (distinct recipients)")
    parser.add_argument("--processes", "-p", type=int, default=2)
    parser.add_argument("--connections", "-c", type=int, default=8, help="connections per process")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop in the senders")
    parser.add_argument("--client", choices=["adapter", "sendmail"], default="adapter",
                        help="ecrm's SmtpEmail adapter (default), or plain aiosmtplib sendmail")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="raw-ceiling-") as tmp:
        sink = SinkProcess(Path(tmp) / "sink-stats.json")
        try:
            sink_cpu_started = sink.cpu_seconds()
            result = measure_raw_ceiling(args.n, args.processes, args.connections, "127.0.0.1", sink.port,
                                         use_uvloop=not args.no_uvloop, client=args.client)
            sink_cpu_ms_per_msg = (sink.cpu_seconds() - sink_cpu_started) * 1000 / max(result.messages, 1)
        finally:
            stats = sink.stop()
    lost, duplicated = lost_and_duplicated(stats["per_recipient"], {recipient(i) for i in range(args.n)})
    print(f"raw_ceiling client={args.client} n={args.n} processes={args.processes} connections={args.connections} "
          f"uvloop={not args.no_uvloop}: {result.line()} sink_cpu_ms_per_msg={sink_cpu_ms_per_msg:.3f} "
          f"sink_messages={stats['messages']} lost={lost} duplicated={duplicated}")
    return 0 if lost == duplicated == result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
