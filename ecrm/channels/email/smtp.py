"""Email over SMTP (RFC 5321) with aiosmtplib: a small pool of persistent connections.

Connections open lazily, are reused across batches, and are replaced after an error or when
the server closed them while idle. When the server advertises PIPELINING (RFC 2920),
aiosmtplib only sets the session up and `pipelining.PipelinedSmtp` streams messages, one write
and one round trip per message instead of four round trips.
Replies to a message map to our errors by their class (RFC 5321 4.2.1): 4xx and dropped
connections are transient, 5xx are permanent. Failing to connect, to start TLS or to log in is
always transient: it says nothing about the message, so the message waits for the server (or
the settings) to be fixed instead of being failed. After such a failure the adapter refuses
new sessions for `RECONNECT_PAUSE` seconds, so a batch fails fast instead of timing out
once per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import ClassVar, cast

import aiosmtplib

from ecrm.channels.base import SendResult, Work, send_many
from ecrm.channels.email.pipelining import (
    BODY_8BITMIME,
    Done,
    Item,
    PipelinedSmtp,
    Take,
    Writing,
    no_answer,
    no_writing,
)
from ecrm.channels.email.seven_bit import seven_bit_item, seven_bit_take
from ecrm.channels.email.smtputf8 import SMTPUTF8, ascii_only
from ecrm.errors import PermanentSendError, SendError, TransientSendError
from ecrm.messages import OutgoingEmail
from ecrm.settings import Settings, SmtpSettings
from ecrm.types import ChannelKind

RECONNECT_PAUSE = 5.0


class _Session:
    """One pooled SMTP connection: pipelined when the server allows it, aiosmtplib's sendmail if not."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        transport = client.protocol.transport if client.protocol is not None else None
        # uvloop's transports do not subclass asyncio.Transport, so ask for the one method needed.
        pipelining = client.supports_extension("pipelining") and hasattr(transport, "set_protocol")
        self.pipe = PipelinedSmtp(cast(asyncio.Transport, transport)) if pipelining else None
        self.eight_bit = client.supports_extension("8bitmime")
        self.smtputf8 = client.supports_extension("smtputf8")

    @property
    def usable(self) -> bool:
        return self.pipe.usable if self.pipe is not None else self.client.is_connected

    async def stream(self, first: Item, take: Take, done: Done, reply_wait: float,
                     writing: Writing = no_writing) -> bool:
        """Send `first`, then whatever `take` hands out, on this connection; return whether the
        connection is still healthy."""
        if not self.smtputf8:  # a message whose address needs SMTPUTF8 fails here, the others go on
            admitted, take = ascii_only(first, take, done)
            if admitted is None:
                return self.usable
            first = admitted
        if not self.eight_bit:
            first, take = seven_bit_item(first), seven_bit_take(take)
        if self.pipe is not None:
            return await self.pipe.stream(first, take, done, reply_wait, writing)
        item: Item | None = first
        while item is not None:
            try:
                writing(item)
                async with asyncio.timeout(reply_wait):
                    await self._sendmail(item[1])
            except PermanentSendError as refused:
                done(item, refused)  # the message was refused, not the connection
            except (TransientSendError, TimeoutError) as exc:
                done(item, exc if isinstance(exc, TransientSendError) else no_answer(reply_wait))
                return False
            else:
                done(item, None)
            item = take()
        return self.usable

    async def _sendmail(self, message: OutgoingEmail) -> None:
        with _map_errors(message.recipient):
            options = [BODY_8BITMIME] if message.eight_bit else []
            await self.client.sendmail(message.sender, [message.recipient], message.data, timeout=None,
                                       mail_options=[*options, SMTPUTF8] if message.smtputf8 else options)

    async def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await self.client.quit()

    def abort(self) -> None:
        if self.pipe is not None:
            self.pipe.transport.abort()
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            self.client.close()


class SmtpEmail:
    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    provider: ClassVar[str] = "smtp"

    def __init__(self, config: SmtpSettings) -> None:
        self.config = config
        self.max_concurrency = config.connections
        self._idle: asyncio.LifoQueue[_Session] = asyncio.LifoQueue()
        self._open: set[_Session] = set()
        self._slots = asyncio.Semaphore(config.connections)  # shared by every batch of this process
        self._down: tuple[float, TransientSendError] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmail:
        return cls(settings.smtp)

    async def send(self, message: OutgoingEmail) -> SendResult:
        outcome = (await send_many(self, [message]))[0]
        if isinstance(outcome, SendError):
            raise outcome
        return cast(SendResult, outcome)

    async def send_work(self, work: Work[OutgoingEmail]) -> None:
        """Send on up to `connections` connections at once, each streaming messages until the
        work runs out (pipelined: one round trip per message)."""
        await asyncio.gather(*(self._lane(work) for _ in range(self.max_concurrency)))

    async def _lane(self, work: Work[OutgoingEmail]) -> None:
        def done(item: Item, error: SendError | None) -> None:
            work.done(item[0], error or SendResult(self.provider, item[1].message_id))

        def writing(item: Item) -> None:
            work.writing(item[0])

        while True:
            async with self._slots:  # shared by every batch of this process
                first = work.take()
                if first is None:
                    return
                try:
                    session = await self._acquire()
                except TransientSendError as exc:
                    work.done(first[0], exc)
                    continue
                healthy = await session.stream(first, work.take, done, self.config.timeout, writing)
                self._release(session, healthy)

    async def warm_up(self, count: int | None = None) -> None:
        """Open `count` (default: all) connections now rather than on the first sends."""
        sessions = [await self._acquire() for _ in range(count or self.config.connections)]
        for session in sessions:
            self._release(session, healthy=True)

    async def close(self) -> None:
        sessions, self._open = list(self._open), set()
        for session in sessions:
            await session.close()

    async def _acquire(self) -> _Session:
        while not self._idle.empty():  # a pooled connection the server closed meanwhile (idle timeout) is dropped
            session = self._idle.get_nowait()
            if session.usable:
                return session
            self._open.discard(session)
            session.abort()
        if self._down is not None and time.monotonic() < self._down[0]:
            raise self._down[1]
        client = smtp_client(self.config)
        try:
            await client.connect()
            if client.last_ehlo_response is None:
                await client.ehlo()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = TransientSendError(f"cannot open an SMTP session with {self.config.host}:{self.config.port}: "
                                       f"{exc}")
            self._down = (time.monotonic() + RECONNECT_PAUSE, error)
            client.close()
            raise error from exc
        self._down = None
        session = _Session(client)
        self._open.add(session)
        return session

    def _release(self, session: _Session, healthy: bool) -> None:
        if healthy and session.usable:
            self._idle.put_nowait(session)
            return
        self._open.discard(session)
        session.abort()


def smtp_client(config: SmtpSettings, timeout: float | None = None) -> aiosmtplib.SMTP:
    """A client for the configured server (not connected): TLS, STARTTLS and login as set."""
    return aiosmtplib.SMTP(
        hostname=config.host, port=config.port, timeout=timeout or config.timeout,
        use_tls=config.tls, start_tls=config.starttls or None,
        username=config.username, password=config.password,
    )


@contextlib.contextmanager
def _map_errors(recipient: str) -> Iterator[None]:
    """The one place where aiosmtplib's exceptions become ours."""
    try:
        yield
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusal = exc.recipients[0]
        raise _by_code(refusal.code, f"{recipient} refused: {refusal.code} {refusal.message}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _by_code(exc.code, f"SMTP server answered {exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientSendError(f"SMTP connection failed: {exc}") from exc


def _by_code(code: int, reason: str) -> TransientSendError | PermanentSendError:
    return PermanentSendError(reason) if 500 <= code < 600 else TransientSendError(reason)
