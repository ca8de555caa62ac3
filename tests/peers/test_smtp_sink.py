"""The SMTP sink against a real aiosmtplib client and a raw socket client (pipelining, split end markers)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import NamedTuple

import aiosmtplib
import pytest

from ecrm.peers.smtp_sink import BodySample, SmtpSink, write_stats

ROOT = Path(__file__).resolve().parents[2]
SENDER = "shop@example.test"
MESSAGE = b"From: shop@example.test\r\nTo: ana@example.test\r\nSubject: hi\r\n\r\nHello Ana\r\n"


class Peer(NamedTuple):
    sink: SmtpSink
    port: int


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    sink = SmtpSink()
    yield Peer(sink, await sink.start())
    await sink.close()


def _client(port: int) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="localhost", timeout=5)


async def _started(server: SmtpSink) -> tuple[SmtpSink, int]:
    return server, await server.start()


async def _raw_exchange(port: int, chunks: list[bytes], replies: int) -> list[bytes]:
    """Write each chunk as its own TCP segment, then collect ``replies`` complete replies (greeting first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        received: list[bytes] = []
        while len(received) < replies:
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line, f"connection closed after {received!r}"
            if line[3:4] != b"-":
                received.append(line[:3])
        return received
    finally:
        writer.close()
        await writer.wait_closed()


async def test_single_message_is_counted_once_for_its_recipient(peer: Peer) -> None:
    async with _client(peer.port) as client:
        errors, reply = await client.sendmail(SENDER, ["ana@example.test"], MESSAGE)

    assert errors == {}
    assert reply.startswith("2.0.0")
    assert peer.sink.per_recipient == {"ana@example.test": 1}
    assert peer.sink.stats()["bytes"] == len(MESSAGE)
    assert peer.sink.stats()["messages"] == 1


async def test_ehlo_advertises_pipelining_8bitmime_smtputf8_and_size(peer: Peer) -> None:
    async with _client(peer.port) as client:
        await client.ehlo()
        extensions = set(client.esmtp_extensions)

    assert {"pipelining", "8bitmime", "smtputf8", "size"} <= extensions


async def test_many_messages_on_one_connection_are_each_counted(peer: Peer) -> None:
    recipients = [f"user{i}@example.test" for i in range(50)]
    async with _client(peer.port) as client:
        await asyncio.gather(*(client.sendmail(SENDER, [to], MESSAGE) for to in recipients))

    assert peer.sink.messages == 50
    assert peer.sink.per_recipient == dict.fromkeys(recipients, 1)
    assert peer.sink.connections == 1


async def test_pipelined_transactions_in_one_write_are_answered_in_order(peer: Peer) -> None:
    transaction = b"MAIL FROM:<s@x.test>\r\nRCPT TO:<%s@x.test>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\n"
    batch = b"EHLO me\r\n" + transaction % b"a" + b"RSET\r\nNOOP\r\n" + transaction % b"b" + b"QUIT\r\n"

    codes = await _raw_exchange(peer.port, [batch], replies=13)

    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"250", b"250",
                     b"250", b"250", b"354", b"250", b"221"]
    assert peer.sink.per_recipient == {"a@x.test": 1, "b@x.test": 1}


async def test_commands_out_of_sequence_are_refused_without_counting(peer: Peer) -> None:
    batch = b"HELO me\r\nRCPT TO:<a@x.test>\r\nDATA\r\nMAIL FROM:<s@x.test>\r\nDATA\r\nBOGUS\r\nQUIT\r\n"

    codes = await _raw_exchange(peer.port, [batch], replies=8)

    assert codes == [b"220", b"250", b"503", b"503", b"250", b"554", b"500", b"221"]
    assert peer.sink.messages == 0


@pytest.mark.parametrize("split", range(1, 5))
async def test_end_marker_split_across_writes_is_detected(peer: Peer, split: int) -> None:
    head = b"EHLO me\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
    message = b"Subject: split\r\n\r\nline one\r\n"
    marker = b".\r\n"
    whole = message + marker
    cut = len(message) - 2 + split  # somewhere inside "\r\n.\r\n"

    codes = await _raw_exchange(peer.port, [head, whole[:cut], whole[cut:], b"QUIT\r\n"], replies=7)

    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    assert peer.sink.stats()["bytes"] == len(message)


async def test_dot_stuffed_lines_round_trip_unchanged(tmp_path: Path) -> None:
    body = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n"
    server, port = await _started(SmtpSink(capture=tmp_path))
    try:
        async with _client(port) as client:
            await client.sendmail(SENDER, ["ana@example.test"], body)
    finally:
        await server.close()

    assert (tmp_path / "1.eml").read_bytes() == body
    assert server.bytes == len(body)


async def test_captured_message_parses_with_the_stdlib_email_parser(tmp_path: Path) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = "Sara <sara@example.test>"
    message["Subject"] = "سلام Sara"
    message["List-Unsubscribe"] = "<https://shop.example.test/u/abc>"
    message.set_content("سلام سارا، خوش آمدید\n")
    message.add_alternative("<p>สวัสดี Sara</p>\n", subtype="html")
    server, port = await _started(SmtpSink(capture=tmp_path))
    try:
        async with _client(port) as client:
            await client.send_message(message)
    finally:
        await server.close()

    parsed = BytesParser(policy=policy.default).parsebytes((tmp_path / "1.eml").read_bytes())
    assert parsed["Subject"] == "سلام Sara"
    assert parsed.get_body(("plain",)).get_content().splitlines() == ["سلام سارا، خوش آمدید"]  # type: ignore[union-attr]
    assert parsed.get_body(("html",)).get_content().splitlines() == ["<p>สวัสดี Sara</p>"]  # type: ignore[union-attr]
    assert server.per_recipient == {"sara@example.test": 1}


async def test_sample_every_hashes_every_nth_message_as_the_client_gave_it() -> None:
    bodies = [b"Subject: %d\r\n\r\n.leading dot\r\nmessage %d\r\n" % (i, i) for i in range(7)]
    server, port = await _started(SmtpSink(sample_every=3))
    try:
        async with _client(port) as client:
            for i, body in enumerate(bodies):
                await client.sendmail(SENDER, [f"u{i}@example.test"], body)
    finally:
        await server.close()

    assert server.samples == [
        BodySample((f"u{i}@example.test",), len(bodies[i]), hashlib.sha256(bodies[i]).hexdigest()) for i in (2, 5)
    ]


async def test_samples_round_trip_through_the_stats_file_and_reset_clears_them(tmp_path: Path) -> None:
    body = b"Subject: one\r\n\r\nbody\r\n"
    server, port = await _started(SmtpSink(sample_every=1))
    try:
        async with _client(port) as client:
            await client.sendmail(SENDER, ["a@example.test", "b@example.test"], body)
    finally:
        await server.close()
    write_stats(server, tmp_path / "stats.json")
    server.reset()

    written = json.loads((tmp_path / "stats.json").read_text())["samples"]
    assert [BodySample.from_json(sample) for sample in written] == [
        BodySample(("a@example.test", "b@example.test"), len(body), hashlib.sha256(body).hexdigest())
    ]
    assert server.samples == []


def test_sample_every_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="sample_every"):
        SmtpSink(sample_every=0)


async def test_fail_after_answers_421_and_closes_then_accepts_again() -> None:
    server, port = await _started(SmtpSink(fail_after=1, fail_count=2))
    try:
        async with _client(port) as client:
            await client.sendmail(SENDER, ["a@example.test"], MESSAGE)
            with pytest.raises(aiosmtplib.SMTPDataError) as first_failure:
                await client.sendmail(SENDER, ["b@example.test"], MESSAGE)
            assert not client.is_connected
        async with _client(port) as client:
            with pytest.raises(aiosmtplib.SMTPDataError):
                await client.sendmail(SENDER, ["b@example.test"], MESSAGE)
        async with _client(port) as client:
            await client.sendmail(SENDER, ["b@example.test"], MESSAGE)
    finally:
        await server.close()

    assert (first_failure.value.code, first_failure.value.message) == (421, "4.3.0 service unavailable")
    assert server.per_recipient == {"a@example.test": 1, "b@example.test": 1}
    assert server.stats()["failed"] == 2


async def test_rejected_recipient_gets_550_and_the_others_are_delivered() -> None:
    server, port = await _started(SmtpSink(reject={"gone@example.test"}))
    try:
        async with _client(port) as client:
            errors, _ = await client.sendmail(SENDER, ["ana@example.test", "gone@example.test"], MESSAGE)
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await client.sendmail(SENDER, ["gone@example.test"], MESSAGE)
    finally:
        await server.close()

    assert errors["gone@example.test"].code == 550
    assert errors["gone@example.test"].message == "5.1.1 no such user"
    assert refused.value.recipients[0].code == 550
    assert server.per_recipient == {"ana@example.test": 1}
    assert server.stats()["rejected"] == 2


async def test_standalone_sink_writes_stats_on_sigusr1_and_on_sigterm(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ecrm.peers.smtp_sink", "--port", "0", "--stats-file", str(stats_file),
        stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 10)
        port = int(banner.rsplit(b":", 1)[1])
        async with _client(port) as client:
            await client.sendmail(SENDER, ["ana@example.test"], MESSAGE)
        process.send_signal(signal.SIGUSR1)
        await _wait_for_file(stats_file)
        assert json.loads(stats_file.read_text())["per_recipient"] == {"ana@example.test": 1}
        stats_file.unlink()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    final = json.loads(stats_file.read_text())
    assert (final["messages"], final["duplicates"], final["bytes"]) == (1, 0, len(MESSAGE))


async def _wait_for_file(path: Path) -> None:
    for _ in range(500):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} was not written")
