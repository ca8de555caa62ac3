"""Email over SMTP (RFC 5321) with aiosmtplib: a small pool of persistent connections.

Connections open lazily, are reused across batches, and are replaced after an error.
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
from typing import ClassVar

import aiosmtplib

from ecrm.channels.base import OutgoingEmail, SendResult
from ecrm.errors import PermanentSendError, TransientSendError
from ecrm.settings import Settings, SmtpSettings
from ecrm.types import ChannelKind

RECONNECT_PAUSE = 5.0


class SmtpEmail:
    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    provider: ClassVar[str] = "smtp"

    def __init__(self, config: SmtpSettings) -> None:
        self.config = config
        self.max_concurrency = config.connections
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._open: set[aiosmtplib.SMTP] = set()
        self._slots = asyncio.Semaphore(config.connections)  # shared by every batch of this process
        self._down: tuple[float, TransientSendError] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmail:
        return cls(settings.smtp)

    async def send(self, message: OutgoingEmail) -> SendResult:
        async with self._slots:
            client = await self._acquire()
            healthy = False
            try:
                with _map_errors(message.recipient):
                    # One deadline for the whole transaction: cheaper than aiosmtplib's per-command wait_for.
                    async with asyncio.timeout(self.config.timeout):
                        await client.sendmail(message.sender, [message.recipient], message.data, timeout=None)
                healthy = True
            finally:
                await self._release(client, healthy)
        return SendResult(self.provider, message.message_id)

    async def close(self) -> None:
        clients, self._open = list(self._open), set()
        for client in clients:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    async def _acquire(self) -> aiosmtplib.SMTP:
        if not self._idle.empty():
            return self._idle.get_nowait()
        client = aiosmtplib.SMTP(
            hostname=self.config.host, port=self.config.port, timeout=self.config.timeout,
            use_tls=self.config.tls, start_tls=self.config.starttls or None,
            username=self.config.username, password=self.config.password,
        )
        now = time.monotonic()
        if self._down is not None and now < self._down[0]:
            raise self._down[1]
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = TransientSendError(f"cannot open an SMTP session with {self.config.host}:{self.config.port}: "
                                       f"{exc}")
            self._down = (time.monotonic() + RECONNECT_PAUSE, error)
            raise error from exc
        self._down = None
        self._open.add(client)
        return client

    async def _release(self, client: aiosmtplib.SMTP, healthy: bool) -> None:
        if healthy and client.is_connected:
            self._idle.put_nowait(client)
            return
        self._open.discard(client)
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            client.close()


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
