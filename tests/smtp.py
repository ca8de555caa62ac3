"""An aiosmtpd server on loopback that keeps what it receives and can fail on purpose."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CapturingHandler:
    """Keeps every accepted message; `fail_next` answers 421 to that many DATA commands,
    `refuse` answers 550 to those recipients, `delay` slows each message down."""

    received: list[tuple[str, bytes]] = field(default_factory=list)
    mail_options: list[list[str]] = field(default_factory=list)  # each accepted message's MAIL FROM parameters
    fail_next: int = 0
    refuse: set[str] = field(default_factory=set)
    delay: float = 0.0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return "421 4.3.2 service not available, try again later"
        self.mail_options.append(list(envelope.mail_options))
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, envelope.original_content))
        return "250 2.0.0 queued"

    def per_recipient(self) -> Counter[str]:
        return Counter(rcpt for rcpt, _ in self.received)

    def messages(self) -> dict[str, EmailMessage]:
        parser = BytesParser(policy=policy.default)
        return {rcpt: parser.parsebytes(data) for rcpt, data in self.received}


class SmtpServer:
    """`eight_bit_mime=False`: a server that takes 7-bit mail only (aiosmtpd then announces no
    8BITMIME and refuses BODY=8BITMIME); `smtputf8=True`: one that offers SMTPUTF8 (RFC 6531)."""

    def __init__(self, eight_bit_mime: bool = True, smtputf8: bool = False) -> None:
        self.handler = CapturingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     decode_data=not eight_bit_mime, enable_SMTPUTF8=smtputf8)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
