"""The raw ceiling's independent client and body checks, against the real lean sink on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bench.compose import composer, recipients
from bench.raw_ceiling import (
    BodyCheckError,
    PipelinedConnection,
    SmtpReplyError,
    build_message,
    campaign_sizes,
    check_campaign_bodies,
    check_sent_bodies,
    main,
    message_builder,
    plain_message,
    plausible_sizes,
    recipient,
    send_pipelined,
)
from ecrm.peers.smtp_sink import SmtpSink, write_stats

ROOT = Path(__file__).resolve().parents[2]
N = 40


class Peer(NamedTuple):
    sink: SmtpSink
    port: int


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    sink = SmtpSink(sample_every=1)
    yield Peer(sink, await sink.start())
    await sink.close()


def _no_wait() -> None:
    return None


async def _send(peer: Peer, bodies: list[bytes], connections: int = 3) -> None:
    messages = [(recipient(i), body) for i, body in enumerate(bodies)]
    result = await send_pipelined(messages, connections, "127.0.0.1", peer.port, _no_wait)
    assert (result.sent, result.errors) == (len(bodies), 0)


def _stats(sink: SmtpSink, tmp_path: Path) -> dict[str, Any]:
    """What the benchmark reads back: the sink's stats file."""
    write_stats(sink, tmp_path / "stats.json")
    stats: dict[str, Any] = json.loads((tmp_path / "stats.json").read_text())
    return stats


@pytest.mark.parametrize("size", [*range(160, 250), 1701, 4000])
def test_plain_message_is_exactly_the_size_asked_in_crlf_lines_of_at_most_78(size: int) -> None:
    message = plain_message(7, size)

    assert len(message) == size
    assert message.endswith(b"\r\n")
    lines = message[:-2].split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line and len(line) <= 78 for line in lines)
    assert b"\r\n.7 " in message


def test_plain_messages_differ_by_index_and_too_small_a_size_is_refused() -> None:
    assert len({plain_message(i, 1700) for i in range(100)}) == 100
    with pytest.raises(ValueError, match="cannot hold"):
        plain_message(1, 60)


def test_campaign_sizes_are_those_of_the_composer_used_by_bench_compose() -> None:
    comp = composer("welcome")
    expected = tuple(len(comp.compose(person).data) for person in recipients(30))

    assert campaign_sizes() == expected
    assert plausible_sizes(expected) == (int(min(expected) * 0.9), int(max(expected) * 1.1) + 1)


async def test_independent_client_delivers_each_distinct_message_once_byte_for_byte(
    peer: Peer, tmp_path: Path
) -> None:
    build = message_builder("independent", (1400, 1700, 2000))
    bodies = [build(i) for i in range(N)]

    await _send(peer, bodies)

    assert peer.sink.per_recipient == {recipient(i): 1 for i in range(N)}
    digests = {(sample.recipients, sample.size, sample.sha256) for sample in peer.sink.samples}
    assert digests == {((recipient(i),), len(body), hashlib.sha256(body).hexdigest()) for i, body in enumerate(bodies)}
    check_sent_bodies(_stats(peer.sink, tmp_path), 1, build)


async def test_sent_body_check_refuses_bodies_other_than_the_ones_built(peer: Peer, tmp_path: Path) -> None:
    await _send(peer, [plain_message(i, 1500) for i in range(N)])

    with pytest.raises(BodyCheckError, match=f"{N} of {N} sampled bodies are not what was sent"):
        check_sent_bodies(_stats(peer.sink, tmp_path), 1, message_builder("independent", (1600,)))


async def test_campaign_body_check_passes_composed_campaign_emails(peer: Peer, tmp_path: Path) -> None:
    comp = composer("welcome")
    await _send(peer, [comp.compose(person).data for person in recipients(N)])

    check_campaign_bodies(_stats(peer.sink, tmp_path), 1, plausible_sizes(campaign_sizes()))


async def test_campaign_body_check_refuses_empty_bodies(peer: Peer, tmp_path: Path) -> None:
    await _send(peer, [b""] * N)

    with pytest.raises(BodyCheckError, match=f"of {N} sampled bodies: {N} empty, only 1 distinct"):
        check_campaign_bodies(_stats(peer.sink, tmp_path), 1, plausible_sizes(campaign_sizes()))


async def test_campaign_body_check_refuses_identical_bodies(peer: Peer, tmp_path: Path) -> None:
    await _send(peer, [plain_message(0, campaign_sizes()[0])] * N)

    with pytest.raises(BodyCheckError, match=f"of {N} sampled bodies: only 1 distinct$"):
        check_campaign_bodies(_stats(peer.sink, tmp_path), 1, plausible_sizes(campaign_sizes()))


async def test_campaign_body_check_refuses_bodies_of_another_size(peer: Peer, tmp_path: Path) -> None:
    await _send(peer, [build_message(i) for i in range(N)])

    with pytest.raises(BodyCheckError, match=f"{N} outside"):
        check_campaign_bodies(_stats(peer.sink, tmp_path), 1, plausible_sizes(campaign_sizes()))


async def test_body_checks_refuse_a_run_the_sink_did_not_sample(tmp_path: Path) -> None:
    sink = SmtpSink()
    port = await sink.start()
    try:
        await _send(Peer(sink, port), [plain_message(i, 1500) for i in range(N)])
    finally:
        await sink.close()

    with pytest.raises(BodyCheckError, match=f"sampled 0 bodies of {N} messages, expected {N // 4}"):
        check_campaign_bodies(_stats(sink, tmp_path), 4, plausible_sizes(campaign_sizes()))


async def test_independent_client_stops_at_a_refused_transaction() -> None:
    sink = SmtpSink(reject={recipient(1)})
    port = await sink.start()
    try:
        with pytest.raises(SmtpReplyError, match="expected 250, got b'550"):
            await send_pipelined([(recipient(i), plain_message(i, 1500)) for i in range(3)], 1, "127.0.0.1",
                                 port, _no_wait)
    finally:
        await sink.close()

    assert sink.per_recipient == {recipient(0): 1}


async def test_independent_client_needs_pipelining() -> None:
    """An EHLO reply without PIPELINING, from a one-connection server speaking just enough SMTP."""
    done = asyncio.Event()

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 old ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-old\r\n250 8BITMIME\r\n")
        await reader.read()
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(SmtpReplyError, match="PIPELINING"):
            await PipelinedConnection.open("127.0.0.1", port)
        await asyncio.wait_for(done.wait(), 5)


def test_independent_client_process_never_loads_ecrm_channel_code() -> None:
    code = (
        "import asyncio, sys\n"
        "from bench.raw_ceiling import plain_message, recipient, send_pipelined\n"
        "from ecrm.peers.smtp_sink import SmtpSink\n"
        "async def run():\n"
        "    sink = SmtpSink(); port = await sink.start()\n"
        "    await send_pipelined([(recipient(i), plain_message(i, 1500)) for i in range(5)], 2, '127.0.0.1', port,"
        " lambda: None)\n"
        "    await sink.close(); return sink.messages\n"
        "print(asyncio.run(run()), sorted(m for m in sys.modules if m.startswith('ecrm.channels')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout

    assert out.split() == ["5", "[]"]


def test_main_measures_the_independent_client_and_checks_its_bodies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "300", "-p", "1", "-c", "2", "--client", "independent"]) == 0

    line = capsys.readouterr().out
    assert re.search(r"client=independent n=300 .* errors=0 .* sink_messages=300 avg_msg_bytes=\d+ "
                     r"bodies_checked=300 lost=0 duplicated=0", line)
