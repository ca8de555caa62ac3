"""The pipelined send path (RFC 2920) against the lean sink, which advertises PIPELINING."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from ecrm.channels.base import SendInterrupted, SendResult, send_many
from ecrm.channels.email.pipelining import _dot_stuff, _extend
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.errors import PermanentSendError, TransientSendError
from ecrm.messages import OutgoingEmail
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.settings import SmtpSettings
from tests.waiting import wait_for

BODY = b"From: shop@example.com\r\nTo: {to}\r\nSubject: hi\r\n\r\n.starts with a dot\r\n..two dots\r\nend"


def email(to: str) -> OutgoingEmail:
    return OutgoingEmail("shop@example.com", to, BODY.replace(b"{to}", to.encode()), f"<{to}>")


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[tuple[SmtpSink, int]]:
    server = SmtpSink(capture=tmp_path / "mail", reject={"gone@example.com"})
    port = await server.start()
    yield server, port
    await server.close()


def channel_for(port: int, connections: int = 3) -> SmtpEmail:
    return SmtpEmail(SmtpSettings(port=port, connections=connections, timeout=5))


def test_dot_stuffing_doubles_line_leading_dots_and_terminates() -> None:
    assert _dot_stuff(b".a\r\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n.\r\n"
    assert _dot_stuff(b"x\r\n") == b"x\r\n.\r\n"


async def test_many_messages_on_few_connections_arrive_once_each_and_intact(
    sink: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    server, port = sink
    channel = channel_for(port)
    try:
        outcomes = await send_many(channel, [email(f"u{i}@example.com") for i in range(60)])
    finally:
        await channel.close()
    assert all(o is not None and not isinstance(o, Exception) for o in outcomes)
    assert server.per_recipient == {f"u{i}@example.com": 1 for i in range(60)}
    assert server.connections == 3
    message = BytesParser(policy=policy.default).parsebytes((tmp_path / "mail" / "1.eml").read_bytes())
    assert message.get_content().replace("\r\n", "\n") == ".starts with a dot\n..two dots\nend\n"


async def test_a_refused_recipient_is_permanent_and_the_connection_goes_on(sink: tuple[SmtpSink, int]) -> None:
    server, port = sink
    channel = channel_for(port, connections=1)
    try:
        outcomes = await send_many(channel, [email("a@example.com"), email("gone@example.com"), email("b@example.com")])
    finally:
        await channel.close()
    assert isinstance(outcomes[1], PermanentSendError) and "550" in outcomes[1].reason
    assert server.per_recipient == {"a@example.com": 1, "b@example.com": 1}
    assert server.connections == 1


async def test_a_421_and_a_dropped_connection_are_transient_and_the_pool_reconnects(tmp_path: Path) -> None:
    sink = SmtpSink(fail_after=2, fail_count=1)  # the third message gets 421, then the sink hangs up
    port = await sink.start()
    channel = SmtpEmail(SmtpSettings(port=port, connections=1, timeout=5))
    try:
        outcomes = await send_many(channel, [email(f"u{i}@example.com") for i in range(6)])
    finally:
        await channel.close()
        await sink.close()
    transient = [i for i, o in enumerate(outcomes) if isinstance(o, TransientSendError)]
    assert transient == [2, 3]  # the fourth's envelope went out with the third's content, on the lost connection
    assert "421" in str(outcomes[2]) and "lost" in str(outcomes[3])
    assert sorted(sink.per_recipient) == [f"u{i}@example.com" for i in (0, 1, 4, 5)]
    assert sink.connections == 2


async def test_a_cancelled_send_finishes_what_is_in_flight_and_reports_exactly_what_was_accepted(
    sink: tuple[SmtpSink, int]
) -> None:
    server, port = sink
    channel = channel_for(port, connections=2)
    sending = asyncio.create_task(send_many(channel, [email(f"u{i}@example.com") for i in range(400)]))
    try:
        await wait_for(lambda: server.messages >= 20)
        sending.cancel()
        with pytest.raises(SendInterrupted) as interrupted:
            await sending
    finally:
        await channel.close()
    accepted = {f"u{i}@example.com" for i, o in enumerate(interrupted.value.outcomes) if isinstance(o, SendResult)}
    assert 20 <= len(accepted) < 400
    assert server.per_recipient == dict.fromkeys(accepted, 1)
    assert all(o is None or isinstance(o, SendResult) for o in interrupted.value.outcomes)


async def silent_after_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SMTP server that opens DATA and then never answers again."""
    writer.write(b"220 silent ESMTP\r\n")
    replies = {b"EHLO": b"250-silent\r\n250 PIPELINING\r\n", b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n",
               b"DATA": b"354 go on\r\n"}
    while (line := await reader.readline()) and line[:4].upper() in replies:
        writer.write(replies[line[:4].upper()])
        if line.startswith(b"DATA"):
            break
    await reader.read()
    writer.close()


async def test_a_server_that_stops_answering_is_transient_after_the_timeout() -> None:
    server = await asyncio.start_server(silent_after_data, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = SmtpEmail(SmtpSettings(port=port, connections=1, timeout=0.3))
    try:
        outcomes = await send_many(channel, [email("a@example.com"), email("b@example.com")])
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()
    assert all(isinstance(o, TransientSendError) and "did not answer within 0.3 s" in o.reason for o in outcomes)


async def test_the_reply_deadline_moves_in_tenths_so_every_message_gets_nine_tenths_of_the_wait() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout_at(start + 10) as deadline:
        _extend(deadline, start + 0.5, 10)
        assert deadline.when() == start + 10  # half a second later: not worth a new timer
        _extend(deadline, start + 1.5, 10)
        assert deadline.when() == start + 11.5
        await asyncio.sleep(0)
