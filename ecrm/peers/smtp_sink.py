"""A lean asyncio SMTP sink (RFC 5321 server side, RFC 2920 pipelining) for benchmarks, the demo and tests.

Peers stage: it stands in for a mail relay. It accepts every well-formed transaction, counts messages per
recipient, and can capture each message to ``<dir>/<n>.eml`` or inject faults (a 421 after N messages,
550 for chosen recipients). The hot path parses no message content: it only finds the ``CRLF.CRLF`` end
marker and counts dot-stuffed lines, so one core sustains far more than aiosmtpd's ~1,700 msg/s.

Counting alone cannot tell a benchmark that sends real mail from one that sends empty or identical
bodies, so ``sample_every=N`` also keeps the size and SHA-256 of every Nth message's content (dot-stuffing
undone) in ``samples``: cheap enough to leave on in a measured run, and enough for the sender to check.

Run standalone with ``python -m ecrm.peers.smtp_sink --port 2525 --stats-file F``: it prints
``ecrm-sink listening on HOST:PORT`` once bound (``--port 0`` picks a free port), writes JSON stats
(``stats()`` plus ``per_recipient`` and, with ``--sample-every``, ``samples``) atomically to ``F`` on
SIGUSR1 and on exit (SIGTERM/SIGINT), and resets its counters on SIGUSR2. Without ``--stats-file`` the
stats go to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from ecrm.peers.serving import serve_until_stopped, write_json

MAX_MESSAGE_SIZE = 50 * 1024 * 1024
MAX_LINE = 4096
END_OF_DATA = b"\r\n.\r\n"
STUFFED = b"\r\n.."

GREETING = b"220 ecrm-sink ESMTP ready\r\n"
EHLO_REPLY = (
    b"250-ecrm-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
    b"250 SIZE %d\r\n" % MAX_MESSAGE_SIZE
)
EHLO_REPLY_7BIT = EHLO_REPLY.replace(b"250-8BITMIME\r\n", b"")  # a server that takes 7-bit mail only
HELO_REPLY = b"250 ecrm-sink\r\n"
OK = b"250 2.0.0 OK\r\n"
SENDER_OK = b"250 2.1.0 sender OK\r\n"
RCPT_OK = b"250 2.1.5 recipient OK\r\n"
QUEUED = b"250 2.0.0 queued\r\n"
START_DATA = b"354 end data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 2.0.0 bye\r\n"
UNAVAILABLE = b"421 4.3.0 service unavailable\r\n"
NO_SUCH_USER = b"550 5.1.1 no such user\r\n"
TOO_BIG = b"552 5.3.4 message too big\r\n"
NO_RECIPIENTS = b"554 5.5.1 no valid recipients\r\n"
BAD_SEQUENCE = b"503 5.5.1 bad sequence of commands\r\n"
BAD_SYNTAX = b"501 5.5.4 syntax error in parameters\r\n"
UNKNOWN_PARAMETER = b"555 5.5.4 MAIL FROM parameters not recognized\r\n"
UNKNOWN = b"500 5.5.2 command not recognized\r\n"
LINE_TOO_LONG = b"500 5.5.6 line too long\r\n"


@dataclass(frozen=True, slots=True)
class BodySample:
    """One sampled message: its recipients, the size and SHA-256 (hex) of its content as the client gave it."""

    recipients: tuple[str, ...]
    size: int
    sha256: str

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BodySample:
        """The inverse of ``asdict``, for samples read back from a stats file."""
        return cls(tuple(document["recipients"]), int(document["size"]), str(document["sha256"]))


class SmtpSink:
    """An in-process SMTP server that accepts and counts mail; see the module docstring."""

    def __init__(
        self,
        *,
        capture: Path | str | None = None,
        fail_after: int | None = None,
        fail_count: int = 1,
        reject: Iterable[str] = (),
        eight_bit_mime: bool = True,
        sample_every: int | None = None,
        smtputf8: bool = True,
    ) -> None:
        if sample_every is not None and sample_every < 1:
            raise ValueError("sample_every must be at least 1")
        self.eight_bit_mime = eight_bit_mime  # False: no 8BITMIME in EHLO, and BODY=8BITMIME is refused
        self.smtputf8 = smtputf8  # False: no SMTPUTF8 in EHLO, and MAIL FROM with SMTPUTF8 is refused
        self.capture = Path(capture) if capture is not None else None
        self.fail_after = fail_after
        self.fail_count = fail_count
        self.reject = frozenset(reject)
        self.sample_every = sample_every
        self.samples: list[BodySample] = []
        self.per_recipient: Counter[str] = Counter()
        self.messages = 0
        self.bytes = 0
        self.failed = 0
        self.rejected = 0
        self.connections = 0
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the bound port."""
        if self.capture is not None:
            self.capture.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), host, port, backlog=1024)
        port_bound: int = self._server.sockets[0].getsockname()[1]
        return port_bound

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is None:
            return
        self._server.close()
        for session in list(self._sessions):
            session.abort()
        await self._server.wait_closed()
        self._server = None

    def reset(self) -> None:
        """Zero every counter (e.g. after a benchmark's warm-up)."""
        self.per_recipient.clear()
        self.samples.clear()
        self.messages = self.bytes = self.failed = self.rejected = self.connections = 0

    def stats(self) -> dict[str, int]:
        """Totals, plus ``duplicates``: messages beyond the first for any recipient."""
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "recipients": len(self.per_recipient),
            "duplicates": sum(count - 1 for count in self.per_recipient.values() if count > 1),
            "failed": self.failed,
            "rejected": self.rejected,
            "connections": self.connections,
        }

    def tally(self) -> dict[str, Any]:
        """``stats()``, ``per_recipient`` counts and any body ``samples``."""
        return {**self.stats(), "per_recipient": dict(self.per_recipient),
                "samples": [asdict(sample) for sample in self.samples]}

    def deliver(self, recipients: list[str], size: int, body: Callable[[], bytes]) -> bytes:
        """Account for one message whose end marker has arrived; return the reply to send."""
        if self._inject_failure():
            return UNAVAILABLE
        self.messages += 1
        self.bytes += size
        per_recipient = self.per_recipient
        for address in recipients:  # Counter.update's Mapping check costs more than this loop
            per_recipient[address] += 1
        if self.sample_every is not None and self.messages % self.sample_every == 0:
            self._sample(recipients, body())
        if self.capture is not None:
            (self.capture / f"{self.messages}.eml").write_bytes(body())
        return QUEUED

    def _sample(self, recipients: list[str], content: bytes) -> None:
        self.samples.append(BodySample(tuple(recipients), len(content), hashlib.sha256(content).hexdigest()))

    def _inject_failure(self) -> bool:
        if self.fail_after is None or self.messages < self.fail_after or self.failed >= self.fail_count:
            return False
        self.failed += 1
        return True


class _Session(asyncio.Protocol):
    """One SMTP connection: a command parser that switches to end-marker scanning inside DATA."""

    _VERBS: ClassVar[dict[bytes, Callable[[_Session, bytes], bytes]]]

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink
        self._buf = bytearray()
        self._in_data = False
        self._scan = 0
        self._sender: bytes | None = None
        self._rcpts: list[str] = []
        self._closing = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._sink.connections += 1
        self._sink._sessions.add(self)
        self._transport.write(GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._sessions.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        out: list[bytes] = []
        while not self._closing and (self._take_message(out) if self._in_data else self._take_command(out)):
            pass
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(b"".join(out))
        if self._closing:
            transport.close()

    def _take_command(self, out: list[bytes]) -> bool:
        buf = self._buf
        eol = buf.find(b"\n")
        if eol < 0:
            if len(buf) > MAX_LINE:
                out.append(LINE_TOO_LONG)
                buf.clear()
            return False
        line = bytes(buf[:eol]).rstrip(b"\r")
        del buf[: eol + 1]
        handler = self._VERBS.get(line[:4].upper())
        if handler is None or line[4:5] not in (b"", b" "):
            out.append(UNKNOWN)
        else:
            out.append(handler(self, line))
        return True

    def _take_message(self, out: list[bytes]) -> bool:
        """Finish the message if its end marker has arrived; ``_buf`` starts with the DATA line's CRLF."""
        buf = self._buf
        end = buf.find(END_OF_DATA, self._scan)
        if end < 0:
            self._scan = max(len(buf) - len(END_OF_DATA) + 1, 0)
            if len(buf) > MAX_MESSAGE_SIZE:
                out.append(TOO_BIG)
                self._closing = True
            return False
        size = end - buf.count(STUFFED, 0, end + 2)
        reply = self._sink.deliver(self._rcpts, size, lambda: bytes(buf[: end + 2]).replace(STUFFED, b"\r\n.")[2:])
        del buf[: end + len(END_OF_DATA)]
        self._in_data = False
        self._reset()
        out.append(reply)
        self._closing = reply is UNAVAILABLE
        return True

    def _reset(self) -> None:
        self._sender = None
        self._rcpts = []

    def _ehlo(self, line: bytes) -> bytes:
        self._reset()
        reply = EHLO_REPLY if self._sink.eight_bit_mime else EHLO_REPLY_7BIT
        return reply if self._sink.smtputf8 else reply.replace(b"250-SMTPUTF8\r\n", b"")

    def _helo(self, line: bytes) -> bytes:
        self._reset()
        return HELO_REPLY

    def _mail(self, line: bytes) -> bytes:
        if self._sender is not None:
            return BAD_SEQUENCE
        if line[4:10].upper() != b" FROM:":
            return BAD_SYNTAX
        if not self._sink.eight_bit_mime and b" BODY=" in line.upper():
            return UNKNOWN_PARAMETER
        if not self._sink.smtputf8 and b" SMTPUTF8" in line.upper():
            return UNKNOWN_PARAMETER
        self._sender = line[10:]
        return SENDER_OK

    def _rcpt(self, line: bytes) -> bytes:
        if self._sender is None:
            return BAD_SEQUENCE
        if line[4:8].upper() != b" TO:":
            return BAD_SYNTAX
        address = _address(line[8:])
        if address in self._sink.reject:
            self._sink.rejected += 1
            return NO_SUCH_USER
        self._rcpts.append(address)
        return RCPT_OK

    def _data(self, line: bytes) -> bytes:
        if self._sender is None:
            return BAD_SEQUENCE
        if not self._rcpts:
            return NO_RECIPIENTS
        self._in_data = True
        self._buf[0:0] = b"\r\n"
        self._scan = 0
        return START_DATA

    def _rset(self, line: bytes) -> bytes:
        self._reset()
        return OK

    def _noop(self, line: bytes) -> bytes:
        return OK

    def _quit(self, line: bytes) -> bytes:
        self._closing = True
        return BYE


_Session._VERBS = {
    b"EHLO": _Session._ehlo,
    b"HELO": _Session._helo,
    b"MAIL": _Session._mail,
    b"RCPT": _Session._rcpt,
    b"DATA": _Session._data,
    b"RSET": _Session._rset,
    b"NOOP": _Session._noop,
    b"QUIT": _Session._quit,
}


def _address(param: bytes) -> str:
    """The mailbox of a ``<addr> [params]`` path, or its first word when unbracketed."""
    param = param.strip()
    if param.startswith(b"<"):
        close = param.find(b">")
        mailbox = param[1:close] if close > 0 else param[1:]
    else:
        mailbox = param.split(b" ", 1)[0]
    return mailbox.decode("utf-8", "surrogateescape")


def write_stats(sink: SmtpSink, path: Path) -> None:
    """Write ``tally()`` to ``path`` as JSON, atomically."""
    write_json(sink.tally(), path)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecrm.peers.smtp_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--capture", type=Path, help="write each message to DIR/<n>.eml")
    parser.add_argument("--stats-file", type=Path, help="JSON stats, written on SIGUSR1 and on exit")
    parser.add_argument("--fail-after", type=int, help="answer 421 after this many accepted messages")
    parser.add_argument("--fail-count", type=int, default=1, help="how many messages get the 421")
    parser.add_argument("--reject", action="append", default=[], help="answer RCPT with 550 (repeatable)")
    parser.add_argument("--sample-every", type=int, help="keep the size and SHA-256 of every Nth message's content")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the sink until SIGTERM/SIGINT, honouring the signal protocol in the module docstring."""
    sink = SmtpSink(capture=args.capture, fail_after=args.fail_after, fail_count=args.fail_count, reject=args.reject,
                    sample_every=args.sample_every)
    port = await sink.start(args.host, args.port)
    await serve_until_stopped(sink, "ecrm-sink", args.host, port, args.stats_file, sink.reset)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
