"""Raw transport ceiling: pre-built messages through an SMTP client to the lean sink, no DB, queue or rendering.

Benchmark stage. It bounds what the email send path can reach on this box. Each client sends N distinct
messages, built once per process before the clock starts, over C reused connections in each of P spawned
processes (``--client``; the first two by default):

- ``adapter``: the client the send jobs use, ecrm's ``SmtpEmail`` adapter and ``send_many`` (aiosmtplib
  sets the session up; RFC 2920 pipelining sends), with ~3 KB multipart/alternative messages (personalised
  To, List-Unsubscribe one-click, utf-8 en/fa/th bodies).
- ``independent``: a client that shares no code with ecrm's channels, on plain asyncio streams. After
  EHLO it makes one write and one round trip per message, as RFC 2920 section 3.1 allows: the previous
  message's dot-stuffed content, then MAIL FROM, RCPT TO and DATA, DATA last in the group, the content
  only after its 354. Message i is as long as the i-th of a sample of composed campaign emails (the
  welcome template in en/fa/th), so the transport carries what a campaign carries, and its index is in
  its headers and on every line, so no two are alike.
- ``sendmail``: plain aiosmtplib ``SMTP.sendmail`` (four round trips per message), for comparison.

Counting messages alone would pass a client that sent empty or identical bodies, so the sink hashes
about ``SAMPLED_BODIES`` of them, and a run whose sampled bodies differ from what the client built fails
with ``BodyCheckError``; ``check_campaign_bodies`` does the same for a pipeline run, which cannot know
its bodies in advance. ecrm's channel code is imported only where the adapter runs, so the independent
client's processes never load it. Run ``python -m bench.raw_ceiling`` from the repository root: per client
it starts ``python -m ecrm.peers.smtp_sink`` in its own process, measures, checks the sink counted exactly
one message per recipient and the sampled bodies, and prints one line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import multiprocessing as mp
import re
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from email.header import Header
from email.utils import formatdate
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiosmtplib

from bench.ceiling import DEADLINE_S, Clock, RawResult, WorkerResult, measure_in_processes, run_sender, wait_for_start
from bench.peers import SinkProcess, lost_and_duplicated
from ecrm.peers.smtp_sink import BodySample

SENDER = "news@shop.example.test"
MAIL_OPTIONS = ["BODY=8BITMIME"]
BOUNDARY = "=_ecrm_alt_7f3a9c"
CLIENTS = ("adapter", "independent", "sendmail")
SAMPLED_BODIES = 200
CAMPAIGN_TEMPLATE = "welcome"  # campaigns/welcome.yaml's, the campaign bench.send launches
CAMPAIGN_SAMPLE = 30
SIZE_SLACK = 0.10  # names, addresses and ids differ between the size sample and a run's recipients
LINE = 76
EMPTY = 2  # an empty message reaches the sink as the CRLF before its end marker
RECIPIENT = re.compile(r"user(\d{7})@example\.test")
# folded with CRLF: a bare LF is not valid on the wire, and aiosmtplib sendmail would rewrite it
SUBJECT = Header("Your weekly picks · پیشنهادهای هفته · ข้อเสนอประจำสัปดาห์", "utf-8").encode(linesep="\r\n")
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


def recipient(i: int) -> str:
    return f"user{i:07d}@example.test"


def recipient_index(address: str) -> int | None:
    """The ``i`` of ``recipient(i)``, or None for any other address."""
    match = RECIPIENT.fullmatch(address)
    return int(match[1]) if match else None


def build_message(i: int) -> bytes:
    """Recipient ``i``'s message, as the wire bytes a pre-encoded MIME template would produce."""
    token = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=12).hexdigest()
    return TEMPLATE.format(
        sender=SENDER, name=f"Customer {i}", to=recipient(i), subject=SUBJECT, date=DATE, token=token,
        boundary=BOUNDARY, text=TEXT_BODY, html=HTML_BODY,
    ).encode("utf-8")


@functools.cache
def campaign_sizes(count: int = CAMPAIGN_SAMPLE) -> tuple[int, ...]:
    """Wire sizes of ``count`` composed campaign emails, for synthetic recipients in en, fa and th."""
    from bench.compose import composer, recipients  # ecrm's renderer, loaded by the measuring process only

    comp = composer(CAMPAIGN_TEMPLATE)
    return tuple(len(comp.compose(person).data) for person in recipients(count))


def plausible_sizes(sizes: Sequence[int]) -> tuple[int, int]:
    """The byte range a campaign email may span: the sample's, widened by ``SIZE_SLACK`` each way."""
    return int(min(sizes) * (1 - SIZE_SLACK)), int(max(sizes) * (1 + SIZE_SLACK)) + 1


def plain_message(i: int, size: int) -> bytes:
    """Recipient ``i``'s message for the independent client: exactly ``size`` bytes of CRLF lines, ``i`` on
    each of them, and one line that starts with a dot, so dot-stuffing is exercised."""
    head = (f"From: <{SENDER}>\r\nTo: <{recipient(i)}>\r\nSubject: raw ceiling message {i}\r\n"
            f"Message-ID: <{i}.raw@bench.local>\r\n\r\n.{i} starts with a dot\r\n").encode()
    left = size - len(head)
    if left < 2:
        raise ValueError(f"{size} bytes cannot hold message {i}")
    text = f"{i} ".encode() * LINE
    lines = []
    while left:
        width = min(LINE, left - 2)
        if left - width - 2 == 1:  # one byte cannot be a line; leave room for a bare CRLF
            width -= 1
        lines.append(text[:width] + b"\r\n")
        left -= width + 2
    return head + b"".join(lines)


def message_builder(client: str, sizes: Sequence[int]) -> Callable[[int], bytes]:
    """How ``client``'s message to ``recipient(i)`` is built; the independent client's take campaign sizes."""
    if client != "independent":
        return build_message
    if not sizes:
        raise ValueError("the independent client needs campaign message sizes")
    return lambda i: plain_message(i, sizes[i % len(sizes)])


def measure_raw_ceiling(n: int, processes: int, connections: int, host: str, port: int, *, use_uvloop: bool = True,
                        client: str = "adapter", sizes: Sequence[int] = ()) -> RawResult:
    """Send recipients ``0..n-1`` once each from ``processes`` spawned processes, ``connections`` each;
    ``sizes`` are the independent client's message sizes (``campaign_sizes()``)."""
    message_builder(client, sizes)  # refuses the independent client without sizes here, not in every process
    return measure_in_processes(_worker, (n, processes, connections, host, port, use_uvloop, client, tuple(sizes)),
                                processes, connections)


def _worker(index: int, n: int, processes: int, connections: int, host: str, port: int, use_uvloop: bool,
            client: str, sizes: tuple[int, ...], ready: mp.Queue[int], go: EventType,
            results: mp.Queue[WorkerResult]) -> None:
    build = message_builder(client, sizes)
    messages = [(recipient(i), build(i)) for i in range(index, n, processes)]
    send_all = SENDERS[client]
    start_line = functools.partial(wait_for_start, index, ready, go)
    results.put(run_sender(send_all(messages, connections, host, port, start_line), use_uvloop))


async def _send_all(messages: list[tuple[str, bytes]], connections: int, host: str, port: int,
                    start_line: Callable[[], None]) -> WorkerResult:
    clients = [aiosmtplib.SMTP(hostname=host, port=port, local_hostname="bench.local", timeout=30)
               for _ in range(connections)]
    for client in clients:
        await client.connect()
        await client.ehlo()
    await asyncio.to_thread(start_line)
    clock, pending = Clock(), iter(messages)
    async with asyncio.timeout(DEADLINE_S):
        errors = sum(await asyncio.gather(*(_pump(client, pending) for client in clients)))
    clock.stop()
    for client in clients:
        await client.quit()
    return clock.result(len(messages) - errors, errors)


async def _send_through_adapter(messages: list[tuple[str, bytes]], connections: int, host: str, port: int,
                                start_line: Callable[[], None]) -> WorkerResult:
    """The same path as ecrm's send jobs minus database, queue and rendering: `SmtpEmail` (the
    email channel adapter: pooled connections, RFC 2920 pipelining when offered) and `send_many`."""
    from ecrm.channels.base import send_many
    from ecrm.channels.email.smtp import SmtpEmail
    from ecrm.errors import SendError
    from ecrm.messages import OutgoingEmail
    from ecrm.settings import SmtpSettings

    channel = SmtpEmail(SmtpSettings(host=host, port=port, connections=connections))
    await channel.warm_up()
    outgoing = [OutgoingEmail(SENDER, to, data, "") for to, data in messages]
    await asyncio.to_thread(start_line)
    clock = Clock()
    async with asyncio.timeout(DEADLINE_S):
        outcomes = await send_many(channel, outgoing)
    clock.stop()
    await channel.close()
    errors = sum(1 for outcome in outcomes if isinstance(outcome, SendError))
    return clock.result(len(messages) - errors, errors)


async def _pump(client: aiosmtplib.SMTP, pending: Iterator[tuple[str, bytes]]) -> int:
    """Send from the shared iterator until it is empty; ``timeout=None`` keeps ``wait_for`` off each reply."""
    errors = 0
    for to, message in pending:
        try:
            await client.sendmail(SENDER, [to], message, mail_options=MAIL_OPTIONS, timeout=None)
        except aiosmtplib.SMTPException:
            errors += 1
    return errors


class SmtpReplyError(RuntimeError):
    """The independent client got a reply other than the one its transaction expects."""


QUEUED = (b"250",)
ENVELOPE_OK = (b"250", b"250", b"354")


class PipelinedConnection:
    """One connection of the independent client: plain asyncio streams, replies read in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> PipelinedConnection:
        """Connect and say EHLO; a server that does not offer PIPELINING (RFC 2920) is refused."""
        reader, writer = await asyncio.open_connection(host, port)
        connection = cls(reader, writer)
        try:
            await connection.expect((b"220",))
            writer.write(b"EHLO bench.local\r\n")
            if b"PIPELINING" not in await connection.extensions():
                raise SmtpReplyError("the server does not offer PIPELINING")
        except BaseException:
            writer.close()
            raise
        return connection

    async def extensions(self) -> set[bytes]:
        """The EHLO reply's keywords, upper-cased."""
        keywords: set[bytes] = set()
        while True:
            line = await self.reader.readline()
            if line[:3] != b"250":
                raise SmtpReplyError(f"EHLO refused: {line!r}")
            keywords.update(line[4:].upper().split()[:1])
            if line[3:4] != b"-":
                return keywords

    async def expect(self, codes: Sequence[bytes]) -> None:
        """Read one reply per code, in order, skipping continuation lines; any other reply ends the run."""
        readline = self.reader.readline
        for code in codes:
            line = await readline()
            while line[3:4] == b"-":
                line = await readline()
            if line[:3] != code:
                raise SmtpReplyError(f"expected {code.decode()}, got {line!r}")

    async def pump(self, pending: Iterator[tuple[str, bytes]]) -> int:
        """Send from the shared iterator until it is empty: each write carries one message's content and
        the next message's envelope, so each message costs one round trip."""
        current = next(pending, None)
        if current is None:
            return 0
        self.writer.write(envelope(current[0]))
        await self.expect(ENVELOPE_OK)
        sent = 0
        while current is not None:
            following = next(pending, None)
            if following is None:
                self.writer.write(dot_stuff(current[1]))
                await self.expect(QUEUED)
            else:
                self.writer.write(dot_stuff(current[1]) + envelope(following[0]))
                await self.expect(QUEUED + ENVELOPE_OK)
            sent += 1
            current = following
        return sent

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.expect((b"221",))
        self.writer.close()
        await self.writer.wait_closed()

    def close(self) -> None:
        """Drop the connection (after ``quit``, or when a run fails half way)."""
        self.writer.close()


def envelope(to: str) -> bytes:
    """MAIL FROM, RCPT TO and DATA, DATA last: a group RFC 2920 lets a client send without waiting."""
    return f"MAIL FROM:<{SENDER}> BODY=8BITMIME\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode()


def dot_stuff(message: bytes) -> bytes:
    """``message`` as DATA content (RFC 5321 4.5.2): a dot doubled at each line start, then the end marker."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


async def send_pipelined(messages: list[tuple[str, bytes]], connections: int, host: str, port: int,
                         start_line: Callable[[], None]) -> WorkerResult:
    """The independent client: ``connections`` ``PipelinedConnection`` sharing one queue of messages."""
    clients: list[PipelinedConnection] = []
    try:
        for _ in range(connections):
            clients.append(await PipelinedConnection.open(host, port))
        result = await _pump_pipelined(clients, messages, start_line)
        for client in clients:
            await client.quit()
    finally:
        for client in clients:
            client.close()
    return result


async def _pump_pipelined(clients: list[PipelinedConnection], messages: list[tuple[str, bytes]],
                          start_line: Callable[[], None]) -> WorkerResult:
    await asyncio.to_thread(start_line)
    clock, pending = Clock(), iter(messages)
    async with asyncio.timeout(DEADLINE_S):
        sent = sum(await asyncio.gather(*(client.pump(pending) for client in clients)))
    clock.stop()
    return clock.result(sent, len(messages) - sent)


Sender = Callable[[list[tuple[str, bytes]], int, str, int, Callable[[], None]], Coroutine[Any, Any, WorkerResult]]
SENDERS: dict[str, Sender] = {"adapter": _send_through_adapter, "independent": send_pipelined, "sendmail": _send_all}


class BodyCheckError(RuntimeError):
    """The sink's sampled bodies show the run did not send real, distinct messages: its rate means nothing."""


def sample_every(n: int) -> int:
    """The sink's sampling interval for an ``n``-message run: about ``SAMPLED_BODIES`` samples whatever ``n``."""
    return max(1, n // SAMPLED_BODIES)


def sampled_bodies(stats: dict[str, Any], every: int) -> list[BodySample]:
    """The sink's samples, refused unless there is one for every ``every`` messages it counted (and one at least)."""
    samples = [BodySample.from_json(sample) for sample in stats.get("samples", [])]
    expected = stats["messages"] // every
    if not samples or len(samples) != expected:
        raise BodyCheckError(f"the sink sampled {len(samples)} bodies of {stats['messages']} messages, "
                             f"expected {expected} (one in {every})")
    return samples


def check_sent_bodies(stats: dict[str, Any], every: int, build: Callable[[int], bytes]) -> None:
    """For a ceiling run, which knows what it sent: each sampled body hashes to ``build(i)`` for its recipient."""
    samples = sampled_bodies(stats, every)
    wrong = [sample for sample in samples if sample.sha256 != _expected_digest(sample, build)]
    if wrong:
        raise BodyCheckError(f"{len(wrong)} of {len(samples)} sampled bodies are not what was sent, "
                             f"e.g. {wrong[0].size} bytes to {', '.join(wrong[0].recipients)}")


def _expected_digest(sample: BodySample, build: Callable[[int], bytes]) -> str | None:
    index = recipient_index(sample.recipients[0]) if len(sample.recipients) == 1 else None
    return None if index is None else hashlib.sha256(build(index)).hexdigest()


def check_campaign_bodies(stats: dict[str, Any], every: int, sizes: tuple[int, int]) -> None:
    """For a pipeline run, which composes its bodies as it goes: the sampled ones must be non-empty,
    pairwise distinct and within ``sizes`` (``plausible_sizes``), the span of a campaign email."""
    samples = sampled_bodies(stats, every)
    low, high = sizes
    problems = []
    if empty := sum(1 for sample in samples if sample.size <= EMPTY):
        problems.append(f"{empty} empty")
    if odd := [sample.size for sample in samples if sample.size > EMPTY and not low <= sample.size <= high]:
        problems.append(f"{len(odd)} outside {low}-{high} bytes (e.g. {odd[0]})")
    if (distinct := len({sample.sha256 for sample in samples})) < len(samples):
        problems.append(f"only {distinct} distinct")
    if problems:
        raise BodyCheckError(f"of {len(samples)} sampled bodies: {', '.join(problems)}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages (distinct recipients)")
    parser.add_argument("--processes", "-p", type=int, default=2)
    parser.add_argument("--connections", "-c", type=int, default=8, help="connections per process")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop in the senders")
    parser.add_argument("--client", nargs="+", choices=CLIENTS, default=["adapter", "independent"],
                        help="ecrm's SmtpEmail adapter, the independent asyncio-streams client (both by default), "
                             "and/or plain aiosmtplib sendmail; each is measured in turn")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    sizes = campaign_sizes() if "independent" in args.client else ()
    ok = [measure_and_check(args, client, sizes) for client in args.client]
    return 0 if all(ok) else 1


def measure_and_check(args: argparse.Namespace, client: str, sizes: Sequence[int]) -> bool:
    """One client's ceiling with its own sink, printed on one line; False if a message was lost,
    duplicated or refused. Bodies that are not what the client built raise ``BodyCheckError``."""
    every = sample_every(args.n)
    with tempfile.TemporaryDirectory(prefix="raw-ceiling-") as tmp:
        sink = SinkProcess(Path(tmp) / "sink-stats.json", every)
        try:
            sink_cpu_started = sink.cpu_seconds()
            result = measure_raw_ceiling(args.n, args.processes, args.connections, "127.0.0.1", sink.port,
                                         use_uvloop=not args.no_uvloop, client=client, sizes=sizes)
            sink_cpu_ms_per_msg = (sink.cpu_seconds() - sink_cpu_started) * 1000 / max(result.messages, 1)
        finally:
            stats = sink.stop()
    check_sent_bodies(stats, every, message_builder(client, sizes))
    lost, duplicated = lost_and_duplicated(stats["per_recipient"], {recipient(i) for i in range(args.n)})
    print(f"raw_ceiling client={client} n={args.n} processes={args.processes} connections={args.connections} "
          f"uvloop={not args.no_uvloop}: {result.line()} sink_cpu_ms_per_msg={sink_cpu_ms_per_msg:.3f} "
          f"sink_messages={stats['messages']} avg_msg_bytes={stats['bytes'] / max(stats['messages'], 1):.0f} "
          f"bodies_checked={len(stats['samples'])} lost={lost} duplicated={duplicated}", flush=True)
    return lost == duplicated == result.errors == 0


if __name__ == "__main__":
    sys.exit(main())
