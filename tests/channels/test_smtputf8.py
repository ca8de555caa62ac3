"""Addresses with a non-ASCII local part: sent with SMTPUTF8 to a server that offers it, failed
for good with that reason by one that does not, while the other messages go on (both the
pipelined path, against the lean sink, and aiosmtplib's, against aiosmtpd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.channels.base import SendResult, send_many
from ecrm.channels.email.pipelining import _envelope_bytes
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.errors import PermanentSendError
from ecrm.messages import OutgoingEmail
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.settings import SmtpSettings
from tests.smtp import SmtpServer

UTF8_RECIPIENT = "سارا@xn--mgbh0fb.example"


def email(to: str) -> OutgoingEmail:
    data = f"From: shop@example.com\r\nTo: {to}\r\nSubject: hi\r\n\r\nHello\r\n".encode()
    return OutgoingEmail("shop@example.com", to, data, f"<{len(to)}@x>", smtputf8=not to.isascii())


BATCH = [email("a@example.com"), email(UTF8_RECIPIENT), email("b@example.com")]


async def send(port: int) -> list[object]:
    channel = SmtpEmail(SmtpSettings(port=port, connections=1, timeout=5))
    try:
        return list(await send_many(channel, BATCH))
    finally:
        await channel.close()


@pytest.mark.parametrize("offered", [True, False], ids=["offered", "not-offered"])
async def test_the_pipelined_path_uses_smtputf8_only_when_offered(tmp_path: Path, offered: bool) -> None:
    sink = SmtpSink(capture=tmp_path / "mail", smtputf8=offered)
    outcomes = await send(await sink.start())
    await sink.close()
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[2], SendResult)
    if offered:
        assert isinstance(outcomes[1], SendResult)
        assert b"MAIL FROM:<shop@example.com> SMTPUTF8\r\n" in _envelope_bytes(BATCH[1])
        assert b"SMTPUTF8" not in _envelope_bytes(BATCH[0])
        assert sink.per_recipient == {"a@example.com": 1, UTF8_RECIPIENT: 1, "b@example.com": 1}
    else:
        assert isinstance(outcomes[1], PermanentSendError) and "SMTPUTF8" in outcomes[1].reason
        assert UTF8_RECIPIENT in outcomes[1].reason
        assert sink.per_recipient == {"a@example.com": 1, "b@example.com": 1}


@pytest.mark.parametrize("offered", [True, False], ids=["offered", "not-offered"])
async def test_the_plain_path_uses_smtputf8_only_when_offered(offered: bool) -> None:
    server = SmtpServer(smtputf8=offered).start()
    try:
        outcomes = await send(server.port)
    finally:
        server.stop()
    received = [rcpt for rcpt, _ in server.handler.received]
    if offered:
        assert all(isinstance(o, SendResult) for o in outcomes)
        assert received == ["a@example.com", UTF8_RECIPIENT, "b@example.com"]
        assert "SMTPUTF8" in server.handler.mail_options[1] and "SMTPUTF8" not in server.handler.mail_options[0]
    else:
        assert isinstance(outcomes[1], PermanentSendError) and "does not offer it" in outcomes[1].reason
        assert received == ["a@example.com", "b@example.com"]
