"""The ingest benchmark's wrk client: the request files, the summary `ingest_wrk.lua` prints,
and one short wrk run against an aiohttp server on loopback that records what arrived.
(No speed is asserted.)"""

from __future__ import annotations

import io
import random
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from bench import wrk
from bench.ingest import LoadResult, load_python, parse, shopify_body, store_check

SECRET = "benchsecret"
KEY = {"Authorization": "Bearer key-1", "Content-Type": "application/json"}

OUTPUT = """Running 1s test @ http://127.0.0.1:8080
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   5.00ms   90.00%
  1200 requests in 1.00s, 100.00KB read
ecrm-wrk duration_us 1002000
ecrm-wrk answered 1200
ecrm-wrk sent 1205
ecrm-wrk pool 1000
ecrm-wrk latency_us 1150 4200
ecrm-wrk socket_errors 0 1 0 2
ecrm-wrk status 201 1190
ecrm-wrk status 422 10
ecrm-wrk sample 422 {"error": "name is missing", "field": "name"}
Requests/sec:   1197.60
"""


def test_the_summary_is_read_from_the_scripts_lines() -> None:
    summary = wrk.parse_summary(OUTPUT)
    assert (summary.seconds, summary.answered, summary.sent, summary.pool) == (1.002, 1200, 1205, 1000)
    assert (summary.p50_ms, summary.p99_ms) == (1.15, 4.2)
    assert summary.statuses == {201: 1190, 422: 10}
    assert (summary.ok, summary.errors, summary.unanswered, summary.repeated) == (1190, 13, 5, 205)
    assert summary.samples == ['422 {"error": "name is missing", "field": "name"}']


def test_output_without_the_summary_is_a_failure() -> None:
    with pytest.raises(wrk.WrkFailed, match="duration_us"):
        wrk.parse_summary("Running 1s test @ http://127.0.0.1:8080\n")


def test_a_unique_header_is_never_drawn_twice() -> None:
    def draw(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
        n = rng.randrange(5)
        return "/webhooks/shopify", b"{}", {"X-Id": f"id-{n}"}

    seen: set[str] = set()
    first = list(wrk.draw_requests(draw, random.Random(1), 3, KEY, "X-Id", seen))
    second = list(wrk.draw_requests(draw, random.Random(2), 2, KEY, "X-Id", seen))
    ids = [r.headers["X-Id"] for r in first + second]
    assert sorted(ids) == [f"id-{n}" for n in range(5)]
    assert all(r.headers["Authorization"] == "Bearer key-1" for r in first)


def test_the_request_file_holds_each_request_with_its_lengths() -> None:
    file = io.BytesIO()
    requests = [wrk.Request("/v1/events", {"A": "1"}, b'{"x": "\xe0\xb8\xaa"}'), wrk.Request("/v1/p", {}, b"")]
    wrk.write_requests(file, requests, "A")
    assert file.getvalue() == b'A 2\n/v1/events\n1\nA\n1\n12\n{"x": "\xe0\xb8\xaa"}/v1/p\n0\n0\n'


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        wrk.write_requests(io.BytesIO(), [wrk.Request("/", {"A": "1\r\nB: 2"}, b"")])


def _result(answered: dict[int, int], unanswered: int = 0) -> LoadResult:
    return LoadResult("s", "wrk", 0, 0, 1.0, 0.0, 0.0, 0.0, 0, answered=Counter(answered), unanswered=unanswered)


def test_the_store_check_counts_new_profiles_by_their_201_and_allows_the_unanswered() -> None:
    profiles = _result({201: 30, 200: 70, 422: 1}, unanswered=4)
    assert store_check("profiles", "new profiles", profiles, 1, 30).ok
    assert store_check("profiles", "new profiles", profiles, 1, 34).ok
    assert not store_check("profiles", "new profiles", profiles, 1, 35).ok
    assert not store_check("profiles", "new profiles", profiles, 1, 29).ok
    batch = _result({200: 10})
    assert store_check("batch", "events", batch, 100, 1000).ok
    assert not store_check("batch", "events", batch, 100, 999).ok


class Recorder:
    """An HTTP server recording each request: 500 for a body holding "bad", else 200."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: Counter[int] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.path, dict(request.headers), body))
        status = 500 if b"bad" in body else 200
        self.answers[status] += 1
        return web.json_response({"error": "bad\nbody"} if status == 500 else {"ok": True}, status=status)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    found = Recorder()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield found, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk on PATH (apt-get install wrk)")
async def test_wrk_replays_the_drawn_requests_with_fresh_webhook_ids_and_counts_every_answer(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    server, base = recorder
    draw = shopify_body(SECRET)
    seen: set[str] = set()
    bad = wrk.Request("/v1/events", KEY, b'{"bad": 1}')
    pool: dict[str, wrk.Request] = {}
    for thread in (1, 2):
        requests = list(wrk.draw_requests(draw, random.Random(thread), 3, KEY, "X-Shopify-Webhook-Id", seen))
        pool.update((r.headers["X-Shopify-Webhook-Id"], r) for r in requests)
        with (tmp_path / f"load.{thread}").open("wb") as file:
            wrk.write_requests(file, requests + [bad] * (thread == 2), "X-Shopify-Webhook-Id")

    run = await wrk.run(base, tmp_path / "load", 2, 2, 1)

    summary = run.summary
    ids = [headers["X-Shopify-Webhook-Id"] for _, headers, _ in server.seen if "X-Shopify-Webhook-Id" in headers]
    assert len(ids) == len(set(ids)) > 3  # thread 1 went round its three requests, each time with fresh ids
    for path, headers, body in server.seen:
        assert headers["Authorization"] == "Bearer key-1"
        if body == bad.body:
            continue
        original = pool[re.sub(r"-r\d+$", "", headers["X-Shopify-Webhook-Id"])]
        assert (path, body) == (original.path, original.body)
        assert headers["X-Shopify-Hmac-Sha256"] == original.headers["X-Shopify-Hmac-Sha256"]
    assert summary.pool == 7 and summary.answered == sum(summary.statuses.values()) > 0
    assert set(summary.statuses) == {200, 500}
    assert summary.statuses == server.answers and summary.unanswered == 0  # wrk waited for the last answers
    assert summary.sent == len(server.seen) == summary.answered
    assert summary.samples[0] == '500 {"error": "bad\\nbody"}'
    assert summary.errors == summary.statuses[500]
    assert 0 < summary.p50_ms <= summary.p99_ms
    assert run.cpu_seconds > 0


async def test_the_python_client_counts_every_answer_by_status(recorder: tuple[Recorder, str]) -> None:
    server, base = recorder
    args = parse(["--client", "python", "--clients", "3", "--seconds", "0.3"])

    def draw(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
        return "/v1/events", b'{"bad": 1}' if rng.random() < 0.2 else b"{}", {}

    result = await load_python(base, "key-1", "events", draw, args, psutil.Process(), 100)

    assert result.client == "python" and result.unanswered == 0
    assert result.answered == server.answers  # the warm-up's answers too
    assert result.requests < sum(server.answers.values()) and result.items == 100 * result.requests
    assert result.errors > 0 and result.samples[0].startswith('500 /v1/events: {"error": "bad\\nbody"}')
    assert {headers["Authorization"] for _, headers, _ in server.seen} == {"Bearer key-1"}
