"""RFC 2920 command pipelining on a connection that aiosmtplib opened.

aiosmtplib does the session set-up (greeting, EHLO, STARTTLS, AUTH) and then hands its
transport to `PipelinedSmtp`, which sends each message in two round trips instead of four:
MAIL FROM, RCPT TO and DATA in one write, then the dot-stuffed content. Replies are read in
order as they arrive. Used only when the server advertises PIPELINING.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ecrm.errors import PermanentSendError, SendError, TransientSendError

MAX_REPLY = 64 * 1024


class PipelinedSmtp(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._waiters: deque[asyncio.Future[tuple[int, str]]] = deque()
        self._lost: Exception | None = None
        transport.set_protocol(self)

    @property
    def usable(self) -> bool:
        return self._lost is None and not self.transport.is_closing()

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        """Send one message; raise TransientSendError or PermanentSendError with the server's reply.
        After a refusal the transaction is reset (RSET), so the connection stays usable."""
        try:
            await self._transaction(sender, recipient, data)
        except SendError:
            if self.usable:
                await self._reset()
            raise

    async def _reset(self) -> None:
        (reply,) = self._expect(1)
        self._write(b"RSET\r\n")
        if (await reply)[0] != 250:
            self.transport.close()

    async def _transaction(self, sender: str, recipient: str, data: bytes) -> None:
        mail, rcpt, start = self._expect(3)
        self._write(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender.encode(), recipient.encode()))
        replies = [await mail, await rcpt, await start]
        if replies[2][0] == 354 and (replies[0][0] != 250 or replies[1][0] not in (250, 251)):
            (end,) = self._expect(1)
            self._write(b".\r\n")  # the server opened DATA anyway; send an empty message to close it
            await end
        _check(replies[0], 250, "MAIL FROM")
        _check(replies[1], (250, 251), f"RCPT TO {recipient}")
        _check(replies[2], 354, "DATA")
        (end,) = self._expect(1)
        self._write(_dot_stuff(data))
        _check(await end, 250, "end of data")

    def close(self) -> None:
        if self.usable:
            self.transport.write(b"QUIT\r\n")
        self.transport.close()

    def _expect(self, count: int) -> list[asyncio.Future[tuple[int, str]]]:
        if self._lost is not None:
            raise TransientSendError(f"SMTP connection lost: {self._lost}")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(count)]
        self._waiters.extend(futures)
        return futures

    def _write(self, data: bytes) -> None:
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        while (end := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._lines.append(line)
            if line[3:4] != b"-":  # the last line of a reply
                self._deliver(self._lines)
                self._lines = []
        if len(self._buffer) > MAX_REPLY:
            self.transport.abort()

    def _deliver(self, lines: list[bytes]) -> None:
        try:
            code = int(lines[-1][:3])
        except ValueError:
            code = 0
        text = " ".join(line[4:].strip().decode("utf-8", "replace") for line in lines)
        if self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result((code, text))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("closed by the server")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransientSendError(f"SMTP connection lost: {self._lost}"))
                waiter.exception()  # a reply after the first lost one may never be awaited; no warning for it


def _dot_stuff(data: bytes) -> bytes:
    """Double every line-leading dot (RFC 5321 4.5.2) and end the content with CRLF.CRLF."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


def _check(reply: tuple[int, str], expected: int | tuple[int, ...], step: str) -> None:
    code, text = reply
    if code == expected or (isinstance(expected, tuple) and code in expected):
        return
    error: SendError = (PermanentSendError if 500 <= code < 600 else TransientSendError)(
        f"{step} refused: {code} {text}")
    raise error
