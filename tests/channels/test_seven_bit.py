"""8bit emails (UTF-8 bodies as written) reach servers with and without 8BITMIME intact, on the
pipelined path (the lean sink) and on aiosmtplib's sendmail (aiosmtpd)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from ecrm.channels.base import SendResult, send_many
from ecrm.channels.email.pipelining import _envelope_bytes
from ecrm.channels.email.seven_bit import to_seven_bit
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.messages import OutgoingEmail
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.render.mime import EmailHeaders, MimeSkeleton
from ecrm.settings import SmtpSettings
from tests.smtp import SmtpServer

TEXT = "سلام سارا،\n\n.خط دوم با نقطه\nUnsubscribe: https://crm.example/u/T"
HTML = '<html dir="rtl"><p>สวัสดี سارا</p>\n<p>.dot</p></html>'


def persian_email(to: str) -> OutgoingEmail:
    skeleton = MimeSkeleton("فروشگاه", "shop@example.com", "fa")
    data, eight_bit = skeleton.build(EmailHeaders(to, "سلام سارا", "<1.a@shop.example>", "<https://crm.example/u/T>"),
                                     TEXT, HTML)
    assert eight_bit and not data.isascii()
    return OutgoingEmail("shop@example.com", to, data, "<1.a@shop.example>", eight_bit)


def parse(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)


def same_email(received: bytes, sent: bytes) -> bool:
    """Same headers and the same decoded bodies."""
    a, b = parse(received), parse(sent)
    bodies = [(m.get_body(("plain",)), m.get_body(("html",))) for m in (a, b)]
    return (a.items() == b.items() and a.defects == [] and
            [p.get_content() for p in bodies[0] if p] == [p.get_content() for p in bodies[1] if p])


def captured(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.glob("*.eml"))]


def test_the_envelope_declares_an_8bit_body() -> None:
    assert b"MAIL FROM:<shop@example.com> BODY=8BITMIME\r\n" in _envelope_bytes(persian_email("a@example.com"))
    plain = OutgoingEmail("shop@example.com", "a@example.com", b"Subject: x\r\n\r\nhi\r\n", "<1@x>")
    assert b"MAIL FROM:<shop@example.com>\r\n" in _envelope_bytes(plain)


def test_converting_to_7bit_keeps_headers_as_written_and_bodies_as_they_read() -> None:
    sent = persian_email("a@example.com").data
    converted = to_seven_bit(sent)
    assert converted.isascii() and b"Content-Transfer-Encoding: 8bit" not in converted
    assert converted.split(b"\r\n\r\n", 1)[0] == sent.split(b"\r\n\r\n", 1)[0]
    assert same_email(converted, sent)
    assert all(len(line) <= 78 for line in converted.split(b"\r\n"))
    assert b"\n" not in converted.replace(b"\r\n", b"")


@pytest.mark.parametrize("eight_bit_mime", [True, False], ids=["8BITMIME", "7-bit-only"])
async def test_the_pipelined_path_sends_as_written_or_converts(eight_bit_mime: bool, tmp_path: Path) -> None:
    sink = SmtpSink(capture=tmp_path, eight_bit_mime=eight_bit_mime)
    channel = SmtpEmail(SmtpSettings(port=await sink.start(), connections=2, timeout=5))
    messages = [persian_email(f"u{i}@example.com") for i in range(4)]
    try:
        outcomes = await send_many(channel, messages)
    finally:
        await channel.close()
        await sink.close()
    assert all(isinstance(o, SendResult) for o in outcomes)
    received = captured(tmp_path)
    assert len(received) == 4
    for data in received:
        sent = next(m.data for m in messages if f"To: {m.recipient}".encode() in data)
        assert data == sent if eight_bit_mime else (data.isascii() and same_email(data, sent))


@pytest.mark.parametrize("eight_bit_mime", [True, False], ids=["8BITMIME", "7-bit-only"])
async def test_sendmail_declares_or_converts(eight_bit_mime: bool) -> None:
    server = SmtpServer(eight_bit_mime=eight_bit_mime).start()
    channel = SmtpEmail(SmtpSettings(port=server.port, connections=1, timeout=5))
    message = persian_email("a@example.com")
    try:
        outcomes = await send_many(channel, [message])
    finally:
        await channel.close()
        server.stop()
    assert isinstance(outcomes[0], SendResult)
    ((_, data),) = server.handler.received
    if eight_bit_mime:
        assert data == message.data and "BODY=8BITMIME" in server.handler.mail_options[0]
    else:
        assert data.isascii() and same_email(data, message.data)
        assert "BODY=8BITMIME" not in server.handler.mail_options[0]
