"""POST /v1/messages end to end, on SQLite and PostgreSQL: accepted, sent to the local SMTP
server with the template's extra data, idempotent by key (same body, other body, two at once),
consent unless the template is transactional, and arq's own queue."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq import ArqRedis
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import create_api_key
from ecrm.api.app import create_app
from ecrm.api.scopes import Scope
from ecrm.clock import FrozenClock
from ecrm.deliveries.models import Delivery, Send
from ecrm.settings import Settings
from ecrm.worker import make_transactional_worker
from tests.conftest import REDIS_URL, ROOT
from tests.factories import add_profiles
from tests.rows import count_rows
from tests.smtp import SmtpServer, free_port
from tests.waiting import wait_for
from tests.workers import work_until_idle

Client = TestClient[web.Request, web.Application]
RECEIPT = {"template": "receipt", "external_id": "p0", "data": {"order_id": "#1001", "total": "19.99 THB"}}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The shipped templates plus `receipt` (transactional) and `news` (marketing)."""
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    for name, transactional in (("receipt", True), ("news", False)):
        (root / name).mkdir()
        (root / name / "template.yaml").write_text(f"transactional: {str(transactional).lower()}\n")
        (root / name / "subject.txt").write_text("Order {{ data.order_id }}\n")
        (root / name / "body.txt").write_text("Hi {{ profile.first_name }}, you paid {{ data.total }}.\n")
        (root / name / "body.html").write_text("<p>You paid {{ data.total }}.</p>\n")
    return root


@pytest.fixture
def message_settings(send_settings: Settings, templates: Path) -> Settings:
    return send_settings.model_copy(update={"templates_dir": templates})


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, message_settings: Settings, clock: FrozenClock) -> Client:
    return await aiohttp_client(create_app(message_settings, clock))


async def _key(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, *scopes: Scope) -> dict[str, str]:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop-" + "-".join(scopes), clock.now(), scopes)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def send_key(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> dict[str, str]:
    return await _key(sessions, clock, Scope.SEND)


async def _post(client: Client, auth: dict[str, str], body: Any, key: str | None = None) -> tuple[int, Any]:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    resp = await client.post("/v1/messages", json=body, headers=headers)
    return resp.status, await resp.json()


async def test_a_message_is_sent_to_the_smtp_server_with_the_templates_data(
        client: Client, send_key: dict[str, str], smtp: SmtpServer,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    status, body = await _post(client, send_key, RECEIPT)
    assert status == 202 and body["status"] == "queued"
    await wait_for(lambda: len(smtp.handler.received) == 1)
    message = smtp.handler.messages()["p0@example.com"]
    assert message["Subject"] == "Order #1001"
    plain = message.get_body(("plain",))
    assert plain is not None and "you paid 19.99 THB" in plain.get_content()
    assert await delivery_status(sessions, body["delivery_id"], "sent") == "sent"
    async with sessions() as session:
        send = await session.scalar(select(Send))
    assert send is not None and (send.source_kind, send.template) == ("transactional", "receipt")


async def delivery_status(sessions: async_sessionmaker[AsyncSession], delivery_id: int, awaited: str) -> str:
    """The delivery's status once it is `awaited`, or after 10 s."""
    status = ""
    for _ in range(1000):
        async with sessions() as session:
            status = (await session.get_one(Delivery, delivery_id)).status
        if status == awaited:
            break
        await asyncio.sleep(0.01)
    return status


async def test_a_retry_with_the_same_key_and_body_gets_the_same_answer_and_sends_nothing_again(
        client: Client, send_key: dict[str, str], smtp: SmtpServer,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    first = await _post(client, send_key, RECEIPT, key="order-1001")
    await wait_for(lambda: len(smtp.handler.received) == 1)
    assert await _post(client, send_key, RECEIPT, key="order-1001") == first
    status, body = await _post(client, send_key, {**RECEIPT, "data": {"order_id": "#1002"}}, key="order-1001")
    assert (status, body["field"]) == (422, "Idempotency-Key")
    await asyncio.sleep(0.2)
    assert len(smtp.handler.received) == 1
    assert await count_rows(sessions, Delivery) == 1


async def test_two_requests_at_once_with_one_key_send_once(
        client: Client, send_key: dict[str, str], smtp: SmtpServer,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    answers = await asyncio.gather(*(_post(client, send_key, RECEIPT, key="k-1") for _ in range(4)))
    assert answers[0][0] == 202 and all(answer == answers[0] for answer in answers)  # the others waited, then read
    await wait_for(lambda: len(smtp.handler.received) == 1)
    await asyncio.sleep(0.2)
    assert len(smtp.handler.received) == 1
    assert await count_rows(sessions, Delivery) == 1


async def test_marketing_consent_is_needed_unless_the_template_is_transactional(
        client: Client, send_key: dict[str, str], smtp: SmtpServer,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    await client.post("/v1/profiles", json={"external_id": "p0", "consent": {"email": {"state": "withdrawn"}}},
                      headers=await _key(sessions, FrozenClock(), Scope.INGEST))
    status, body = await _post(client, send_key, {**RECEIPT, "template": "news"}, key="n-1")
    assert (status, body["field"]) == (409, "external_id") and "not marked transactional" in body["error"]
    assert await _post(client, send_key, {**RECEIPT, "template": "news"}, key="n-1") == (status, body)
    assert (await _post(client, send_key, RECEIPT))[0] == 202
    await wait_for(lambda: len(smtp.handler.received) == 1)


async def test_bad_requests_name_the_problem(client: Client, send_key: dict[str, str],
                                             sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    await add_profiles(sessions, 1)
    cases: list[tuple[Any, str | None, int, str]] = [
        ({**RECEIPT, "template": "nope"}, None, 422, "template"),
        ({**RECEIPT, "template": "../etc"}, None, 422, "template"),
        ({**RECEIPT, "external_id": "ghost"}, None, 404, "external_id"),
        ({**RECEIPT, "channel": "fax"}, None, 422, "channel"),
        (RECEIPT, "x" * 256, 422, "Idempotency-Key"),
        (RECEIPT, "é", 422, "Idempotency-Key"),
    ]
    for body, key, status, field in cases:
        got, answer = await _post(client, send_key, body, key=key)
        fields = [answer.get("field")] + [f["field"] for f in answer.get("fields", [])]
        assert (got, field in fields) == (status, True), (body, key, answer)
    ingest_only = await _key(sessions, clock, Scope.INGEST)
    assert (await _post(client, ingest_only, RECEIPT))[0] == 403


async def test_with_redis_the_message_goes_through_the_transactional_queue_not_the_campaigns(
        aiohttp_client: AiohttpClient, message_settings: Settings, clock: FrozenClock, redis: ArqRedis,
        send_key: dict[str, str], smtp: SmtpServer, sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = message_settings.model_copy(update={"redis_url": REDIS_URL})
    await add_profiles(sessions, 1)
    client = await aiohttp_client(create_app(settings, clock))
    assert (await _post(client, send_key, RECEIPT))[0] == 202
    await work_until_idle(settings)  # the campaigns' queue has nothing of it
    assert smtp.handler.received == []
    await work_until_idle(settings, make=make_transactional_worker)
    assert [rcpt for rcpt, _ in smtp.handler.received] == ["p0@example.com"]


async def test_a_replay_says_so_in_a_header(client: Client, send_key: dict[str, str], smtp: SmtpServer,
                                            sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    first = await client.post("/v1/messages", json=RECEIPT, headers={**send_key, "Idempotency-Key": "r-1"})
    again = await client.post("/v1/messages", json=RECEIPT, headers={**send_key, "Idempotency-Key": "r-1"})
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    await wait_for(lambda: len(smtp.handler.received) == 1)


async def test_hostile_message_bodies_get_a_4xx_naming_the_problem(
        client: Client, send_key: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    cases: list[tuple[bytes, int, str]] = [
        (json.dumps({**RECEIPT, "data": {"x": deep}}).encode(), 422, "nested deeper"),
        (json.dumps({**RECEIPT, "data": {"x": "a" * 2_000_000}}).encode(), 413, "larger than the limit"),
        (b'{"template": "receipt", "external_id": "\xff"}', 400, "UTF-8"),
        (json.dumps({**RECEIPT, "data": {"x": "\ud800"}}).encode(), 422, "lone surrogate"),
        (json.dumps({**RECEIPT, "data": {"x": "\x00"}}).encode(), 422, "data"),
        (json.dumps({**RECEIPT, "data": {"x": 10 ** 400}}).encode(), 202, ""),  # any JSON number is data
        (b"[1, 2]", 422, "(body)"),
    ]
    for raw, status, text in cases:
        resp = await client.post("/v1/messages", data=io.BytesIO(raw),
                                 headers={**send_key, "Content-Type": "application/json"})
        answer = await resp.json()
        assert resp.status == status and text in json.dumps(answer), (raw[:80], answer)


async def test_with_redis_down_the_api_still_ingests_and_a_retry_with_the_key_sends_the_message(
        aiohttp_client: AiohttpClient, message_settings: Settings, clock: FrozenClock, redis: ArqRedis,
        send_key: dict[str, str], smtp: SmtpServer, sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 1)
    down = message_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = await aiohttp_client(create_app(down, clock))
    ingest = await _key(sessions, clock, Scope.INGEST)
    assert (await client.post("/v1/events", json={"external_id": "p0", "name": "x"}, headers=ingest)).status == 202
    status, body = await _post(client, send_key, RECEIPT, key="k-down")
    assert status == 503 and "same Idempotency-Key" in body["error"]
    up = message_settings.model_copy(update={"redis_url": REDIS_URL})
    client = await aiohttp_client(create_app(up, clock))
    status, body = await _post(client, send_key, RECEIPT, key="k-down")
    assert status == 202  # the stored answer; and the send is queued now
    await work_until_idle(up, make=make_transactional_worker)
    assert [rcpt for rcpt, _ in smtp.handler.received] == ["p0@example.com"]
