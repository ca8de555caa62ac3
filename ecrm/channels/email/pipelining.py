"""RFC 2920 command pipelining on a connection that aiosmtplib opened.

aiosmtplib does the session set-up (greeting, EHLO, STARTTLS, AUTH) and then hands its
transport to `PipelinedSmtp`, which streams messages with one write and one round trip per
message: the dot-stuffed content of one message goes out together with MAIL FROM, RCPT TO
and DATA of the next (RFC 2920 section 3.1 lets the content start a group; the client only
has to wait for 354 before sending content). Replies are matched in order as they arrive.
After a refused envelope the transaction is reset (RSET) and the connection goes on. Used
only when the server advertises PIPELINING.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ecrm.errors import PermanentSendError, SendError, TransientSendError
from ecrm.messages import OutgoingEmail

MAX_REPLY = 64 * 1024

Item = tuple[int, OutgoingEmail]  # a message and its index in the caller's list
Take = Callable[[], Item | None]
Done = Callable[[Item, SendError | None], None]
Writing = Callable[[Item], None]  # a message's content is about to go out (`channels.base.Progress`)


def no_writing(_item: Item) -> None:
    pass


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

    async def stream(self, first: Item, take: Take, done: Done, reply_wait: float,
                     writing: Writing = no_writing) -> bool:
        """Send `first`, then messages from `take` until it returns None, reporting each to
        `done` (None when accepted) and to `writing` just before its content goes out (until
        then the server holds only its envelope, and cannot deliver it). A message whose
        replies take longer than `reply_wait` seconds (less a tenth at most: the deadline moves
        in steps, see `_extend`) fails the connection. Return False if the connection broke
        (what was in flight is reported as a transient failure), True if it is still usable."""
        current: Item | None = first
        following: Item | None = None
        loop = asyncio.get_running_loop()
        try:
            envelope = self._envelope(first[1])
            async with asyncio.timeout_at(loop.time() + reply_wait) as deadline:
                while current is not None:
                    _extend(deadline, loop.time(), reply_wait)
                    message = current[1]
                    refusal = await self._envelope_refusal(envelope, message.recipient)
                    if refusal is not None:
                        done(current, refusal)
                        current = None
                        await self._reset()
                        current = take()
                        envelope = self._envelope(current[1]) if current is not None else []
                        continue
                    following = take()
                    writing(current)
                    end, envelope = self._content(message.data, following[1] if following is not None else None)
                    done(current, _refusal(await end, (250,), "end of data"))
                    current, following = following, None
        except (TransientSendError, TimeoutError) as exc:
            error = exc if isinstance(exc, TransientSendError) else no_answer(reply_wait)
            for item in (current, following):
                if item is not None:
                    done(item, error)
            self.transport.abort()
            return False
        return self.usable

    def _envelope(self, message: OutgoingEmail) -> list[asyncio.Future[tuple[int, str]]]:
        replies = self._expect(3)
        self._write(_envelope_bytes(message))
        return replies

    def _content(self, data: bytes, following: OutgoingEmail | None) -> tuple[
            asyncio.Future[tuple[int, str]], list[asyncio.Future[tuple[int, str]]]]:
        """Write a message's content, and the next message's envelope in the same write."""
        (end,) = self._expect(1)
        if following is None:
            self._write(_dot_stuff(data))
            return end, []
        envelope = self._expect(3)
        self._write(_dot_stuff(data) + _envelope_bytes(following))
        return end, envelope

    async def _envelope_refusal(self, envelope: list[asyncio.Future[tuple[int, str]]],
                                recipient: str) -> SendError | None:
        mail, rcpt, start = [await reply for reply in envelope]
        if start[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            (end,) = self._expect(1)
            self._write(b".\r\n")  # the server opened DATA anyway; send an empty message to close it
            await end
        return (_refusal(mail, (250,), "MAIL FROM") or _refusal(rcpt, (250, 251), f"RCPT TO {recipient}")
                or _refusal(start, (354,), "DATA"))

    async def _reset(self) -> None:
        if not self.usable:
            raise TransientSendError(f"SMTP connection lost: {self._lost}")
        (reply,) = self._expect(1)
        self._write(b"RSET\r\n")
        code, text = await reply
        if code != 250:
            raise TransientSendError(f"RSET refused: {code} {text}")  # the caller drops the connection

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


def no_answer(reply_wait: float) -> TransientSendError:
    return TransientSendError(f"SMTP server did not answer within {reply_wait} s")


def _extend(deadline: asyncio.Timeout, now: float, reply_wait: float) -> None:
    """Move the deadline to `now + reply_wait` when it would gain more than a tenth of that;
    rescheduling replaces a timer handle, too much to pay for every message."""
    when = deadline.when()
    if when is not None and now + reply_wait - when > reply_wait / 10:
        deadline.reschedule(now + reply_wait)


def _envelope_bytes(message: OutgoingEmail) -> bytes:
    """MAIL FROM, RCPT TO and DATA; addresses in UTF-8 (only an SMTPUTF8 message has other
    than ASCII: the session sends one only to a server that offers SMTPUTF8)."""
    return b"MAIL FROM:<%s>%s%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        message.sender.encode(), _BODY_8BIT if message.eight_bit else b"",
        _SMTPUTF8 if message.smtputf8 else b"", message.recipient.encode())


BODY_8BITMIME = "BODY=8BITMIME"  # the MAIL FROM parameter of an 8bit email (RFC 6152)
_BODY_8BIT = b" " + BODY_8BITMIME.encode()
_SMTPUTF8 = b" SMTPUTF8"  # the MAIL FROM parameter of a message with a non-ASCII address (RFC 6531)


def _refusal(reply: tuple[int, str], expected: tuple[int, ...], step: str) -> SendError | None:
    """None if the reply is one of `expected`; else the error its class means (RFC 5321 4.2.1)."""
    code, text = reply
    if code in expected:
        return None
    return (PermanentSendError if 500 <= code < 600 else TransientSendError)(f"{step} refused: {code} {text}")
