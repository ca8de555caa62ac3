"""Hostile and malformed requests get a clear 4xx in JSON naming the problem, never a 500, on
SQLite and PostgreSQL; nothing is written for a refused request."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.api.body import MAX_DEPTH
from ecrm.clock import FrozenClock
from ecrm.feedback.unsubscribe import make_token
from ecrm.metrics import REQUESTS
from ecrm.profiles.models import Event, Profile
from ecrm.settings import Settings
from tests.api.conftest import Client
from tests.rows import count_rows
from tests.waiting import wait_for

ENDPOINTS = [("/v1/profiles", "traits"), ("/v1/events", "properties")]


def _body(path: str, field: str, value: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"external_id": "c-1"} if path == "/v1/profiles" else {"external_id": "c-1",
                                                                                  "name": "order.placed"}
    return {**base, field: value}


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def _post_raw(api: Client, path: str, body: bytes | str, headers: dict[str, str],
                    content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    raw = body.encode() if isinstance(body, str) else body
    resp = await api.post(path, data=io.BytesIO(raw), headers={**headers, "Content-Type": content_type})
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def _nothing_written(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await count_rows(sessions, Profile) == 0
    assert await count_rows(sessions, Event) == 0


@pytest.mark.parametrize(("path", "field"), ENDPOINTS)
async def test_a_body_nested_ten_thousand_deep_is_refused_with_400(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], path: str, field: str) -> None:
    body = json.dumps(_body(path, field, {})).replace("{}", _nested(10_000))
    status, answer = await _post_raw(api, path, body, auth)
    assert status == 400
    assert f"nested deeper than {MAX_DEPTH} levels" in answer["error"]
    await _nothing_written(sessions)


@pytest.mark.parametrize(("path", "field"), ENDPOINTS)
async def test_a_field_nested_past_the_depth_limit_is_refused_with_422_naming_it(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], path: str, field: str) -> None:
    body = json.dumps(_body(path, field, {})).replace("{}", _nested(MAX_DEPTH))
    status, answer = await _post_raw(api, path, body, auth)
    assert (status, answer["field"]) == (422, field)
    assert answer["error"] == f"{field} is nested deeper than {MAX_DEPTH} levels"
    await _nothing_written(sessions)
    within = json.dumps(_body(path, field, {})).replace("{}", _nested(MAX_DEPTH - 2))
    assert (await _post_raw(api, path, within, auth))[0] in (201, 202)


@pytest.mark.parametrize(("path", "field"), ENDPOINTS)
async def test_a_body_that_is_not_utf8_is_refused_with_400(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], path: str, field: str) -> None:
    body = json.dumps(_body(path, field, {"city": "@"})).encode().replace(b"@", b"\xff\xfe")
    status, answer = await _post_raw(api, path, body, auth)
    assert status == 400
    assert "not UTF-8" in answer["error"]
    await _nothing_written(sessions)


@pytest.mark.parametrize("charset", ["bogus", "latin-1", "utf-16"])
async def test_a_charset_other_than_utf8_is_refused_with_415(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], charset: str) -> None:
    body = json.dumps({"external_id": "c-1"})
    status, answer = await _post_raw(api, "/v1/profiles", body, auth, f"application/json; charset={charset}")
    assert status == 415
    assert f"charset '{charset}' is not accepted" in answer["error"]
    await _nothing_written(sessions)
    ok = await _post_raw(api, "/v1/profiles", body, auth, "application/json; charset=UTF-8")
    assert ok[0] == 201


@pytest.mark.parametrize(("path", "value", "field"), [
    ("/v1/profiles", {"traits": {"city": "\ud800"}}, "traits.city"),
    ("/v1/profiles", {"traits": {"\udfff": 1}}, "traits.\udfff"),
    ("/v1/profiles", {"traits": {"tags": ["ok", "x\ud800y"]}}, "traits.tags.1"),
    ("/v1/profiles", {"first_name": "An\ud800a"}, "first_name"),
    ("/v1/events", {"name": "order.placed", "properties": {"note": "\udbff"}}, "properties.note"),
])
async def test_a_lone_surrogate_is_refused_with_422_naming_the_field(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession],
        path: str, value: dict[str, Any], field: str) -> None:
    body = json.dumps({"external_id": "c-1", **value})  # ensure_ascii: the surrogate travels as \ud800
    status, answer = await _post_raw(api, path, body, auth)
    assert (status, answer["field"].encode("unicode_escape")) == (422, field.encode("unicode_escape"))
    assert "lone surrogate" in answer["error"]
    await _nothing_written(sessions)


async def test_a_surrogate_pair_is_an_ordinary_character(api: Client, auth: dict[str, str]) -> None:
    body = json.dumps({"external_id": "c-1", "traits": {"mood": "\U0001f600"}})
    status, answer = await _post_raw(api, "/v1/profiles", body, auth)
    assert (status, answer["traits"]) == (201, {"mood": "\U0001f600"})


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                         "1969-12-31T23:59:59Z", "9999-01-01T00:00:00Z"])
async def test_an_occurred_at_outside_1970_to_9998_is_refused_with_422(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], occurred_at: str) -> None:
    body = json.dumps({"external_id": "c-1", "name": "order.placed", "occurred_at": occurred_at})
    status, answer = await _post_raw(api, "/v1/events", body, auth)
    assert status == 422
    assert answer["fields"] == [{"field": "occurred_at",
                                 "message": "must be between 1970-01-01 and 9998-12-31 (UTC)"}]
    await _nothing_written(sessions)


@pytest.mark.parametrize("occurred_at", ["1970-01-01T00:00:00Z", "9998-12-31T23:59:59+00:00",
                                         "1970-01-01T07:00:00+07:00"])
async def test_an_occurred_at_at_the_edges_of_the_range_is_stored(
        api: Client, auth: dict[str, str], occurred_at: str) -> None:
    body = json.dumps({"external_id": "c-1", "name": "order.placed", "occurred_at": occurred_at})
    assert (await _post_raw(api, "/v1/events", body, auth))[0] == 202


@pytest.mark.parametrize("ids", [(2**63, 1), (1, 2**63), (2**64 - 1, 2**64 - 1)])
async def test_a_signed_unsubscribe_token_with_ids_past_int64_shows_the_invalid_link_page(
        api: Client, settings: Settings, ids: tuple[int, int]) -> None:
    token = make_token(settings.secret_key, *ids)
    for method in ("GET", "POST"):
        resp = await api.request(method, f"/u/{token}")
        assert resp.status == 400
        assert "This unsubscribe link is not valid" in await resp.text()


async def test_a_body_over_the_size_limit_is_refused_with_413(
        aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock, auth: dict[str, str],
        sessions: async_sessionmaker[AsyncSession]) -> None:
    small = settings.model_copy(update={"api": settings.api.model_copy(update={"max_body_bytes": 4096})})
    api = await aiohttp_client(create_app(small, clock))
    body = json.dumps({"external_id": "c-1", "traits": {"blob": "x" * 5000}})
    status, answer = await _post_raw(api, "/v1/profiles", body, auth)
    assert status == 413
    assert answer["error"] == "the body is larger than the limit of 4096 bytes"
    await _nothing_written(sessions)


async def test_the_default_body_limit_is_one_mebibyte(api: Client, auth: dict[str, str]) -> None:
    body = json.dumps({"external_id": "c-1", "traits": {"blob": "x" * (1024 * 1024)}})
    assert (await _post_raw(api, "/v1/profiles", body, auth))[0] == 413


async def test_traits_merged_past_the_cap_are_refused_with_422_and_nothing_changes(
        api: Client, auth: dict[str, str]) -> None:
    """The default cap is 64 KiB of JSON; each update alone fits, their merge does not."""
    first = {"external_id": "c-1", "traits": {"a": "x" * 40_000}}
    assert (await api.post("/v1/profiles", json=first, headers=auth)).status == 201
    second = {"external_id": "c-1", "first_name": "Ana", "traits": {"b": "y" * 40_000}}
    resp = await api.post("/v1/profiles", json=second, headers=auth)
    assert resp.status == 422
    answer = await resp.json()
    assert answer["field"] == "traits"
    assert "over the limit of 65536 (api.max_traits_bytes)" in answer["error"]
    stored = await (await api.get("/v1/profiles/c-1", headers=auth)).json()
    assert (stored["first_name"], list(stored["traits"])) == (None, ["a"])
    replace = {"external_id": "c-1", "traits": {"a": "short", "b": "y" * 40_000}}
    assert (await api.post("/v1/profiles", json=replace, headers=auth)).status == 200


async def test_the_traits_cap_counts_utf8_bytes_and_follows_the_setting(
        aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock, auth: dict[str, str]) -> None:
    small = settings.model_copy(update={"api": settings.api.model_copy(update={"max_traits_bytes": 1000})})
    api = await aiohttp_client(create_app(small, clock))
    thai = {"external_id": "c-1", "traits": {"name": "ก" * 400}}  # 400 characters, 1200 bytes
    resp = await api.post("/v1/profiles", json=thai, headers=auth)
    assert (resp.status, (await resp.json())["field"]) == (422, "traits")


@pytest.mark.parametrize("external_id", ["x" * 5_000, "%ED%A0%80", "%FF", "%00"])
async def test_odd_external_ids_in_the_path_are_answered_404(
        api: Client, auth: dict[str, str], external_id: str) -> None:
    for method in ("GET", "DELETE"):
        resp = await api.request(method, f"/v1/profiles/{external_id}", headers=auth)
        assert resp.status == 404, await resp.text()


async def test_a_client_that_hangs_up_mid_body_is_not_logged_as_an_error(
        settings: Settings, clock: FrozenClock, api_key: str, caplog: pytest.LogCaptureFixture,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Served as `ecrm serve` serves (no handler cancellation): the body read fails, the client
    is gone; an INFO line, no ERROR and no traceback."""
    caplog.set_level(logging.DEBUG)
    answered = REQUESTS.labels("/v1/profiles", "POST", "499")
    before = answered._value.get()
    runner = web.AppRunner(create_app(settings, clock))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = runner.server
        assert server is not None
        port = runner.addresses[0][1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
                     'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"external_id": "c-'.encode())
        await writer.drain()
        await wait_for(lambda: server.requests_count == 1)  # the handler is running: now hang up
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: answered._value.get() == before + 1)
    finally:
        await runner.cleanup()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert any("client closed the connection during POST /v1/profiles" in r.getMessage() for r in caplog.records)
    await _nothing_written(sessions)


@pytest.mark.parametrize(("value", "field"), [({"external_id": "x" * 201}, "external_id"),
                                              ({"email": "a" * 64 + "@" + "b" * 250 + ".com"}, "email"),
                                              ({"first_name": "x" * 201}, "first_name"),
                                              ({"consent": {"email": {"state": "granted", "source": "s" * 201}}},
                                               "consent.email.source")])
async def test_text_longer_than_its_column_is_refused_with_422_naming_the_field(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession],
        value: dict[str, Any], field: str) -> None:
    status, answer = await _post_raw(api, "/v1/profiles", json.dumps({"external_id": "c-1", **value}), auth)
    assert status == 422
    assert [f["field"] for f in answer["fields"]] == [field]
    await _nothing_written(sessions)


@pytest.mark.parametrize("content_type", ["", "text/plain", "application/json; charset",
                                          'application/json; charset="utf-8"', "multipart/form-data",
                                          "application/json; charset=utf-8; charset=latin-1"])
async def test_odd_content_types_get_an_answer_below_500(api: Client, auth: dict[str, str], content_type: str) -> None:
    status, _ = await _post_raw(api, "/v1/profiles", json.dumps({"external_id": "c-1"}), auth, content_type)
    assert status in (200, 201, 400, 415)


@pytest.mark.parametrize("request_head", [b"GET /v1/profiles/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                          b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n",
                                          b"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"])
async def test_a_malformed_http_request_is_a_400_and_one_info_line_not_an_error(
        settings: Settings, clock: FrozenClock, caplog: pytest.LogCaptureFixture, request_head: bytes) -> None:
    caplog.set_level(logging.DEBUG)
    runner = web.AppRunner(create_app(settings, clock))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(request_head)
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    finally:
        await runner.cleanup()
    assert status_line.split()[1] == b"400"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert any(r.name == "aiohttp.server" and "Error handling request from" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("path", "field"), ENDPOINTS)
async def test_an_escaped_nul_in_a_json_field_is_refused_with_422_naming_it(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], path: str, field: str) -> None:
    body = json.dumps(_body(path, field, {"note": "a\x00b"}))  # travels as \u0000, which the body's parser accepts
    status, answer = await _post_raw(api, path, body, auth)
    assert (status, answer["fields"]) == (422, [{"field": field, "message": "must not contain the NUL character"}])
    await _nothing_written(sessions)


async def test_an_escaped_nul_in_a_batch_item_refuses_that_item_alone(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    items = [{"external_id": "c-1", "name": "page.viewed", "properties": {"n": n, "note": "\x00" if n == 1 else ""}}
             for n in range(3)]
    status, answer = await _post_raw(api, "/v1/events:batch", json.dumps({"items": items}), auth)
    assert (status, answer["stored"], answer["errors"]) == (
        200, 2, [{"index": 1, "field": "properties", "message": "must not contain the NUL character"}])
    assert await count_rows(sessions, Event) == 2
