"""Every API route wants a live key, except the health check and unsubscribe links."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import revoke_api_key
from ecrm.clock import FrozenClock
from ecrm.profiles.models import Profile
from tests.api.conftest import Client
from tests.rows import count_rows

PROFILE = {"external_id": "c-1"}


async def test_a_request_without_a_key_answers_401_and_stores_nothing(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    resp = await api.post("/v1/profiles", json=PROFILE)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key is required" in (await resp.json())["error"]
    assert await count_rows(sessions, Profile) == 0


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer ecrm_AAAAAAAA_" + "x" * 43},
    {"X-Api-Key": "not-a-key"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
async def test_an_unknown_or_malformed_key_answers_401(api: Client, api_key: str, headers: dict[str, str]) -> None:
    resp = await api.get("/v1/profiles/c-1", headers=headers)
    assert resp.status == 401
    assert "error" in await resp.json()


async def test_a_key_with_a_wrong_secret_answers_401(api: Client, api_key: str) -> None:
    tampered = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    resp = await api.get("/v1/profiles/c-1", headers={"Authorization": f"Bearer {tampered}"})
    assert resp.status == 401


async def test_a_revoked_key_answers_401(
        api: Client, api_key: str, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        assert await revoke_api_key(session, api_key, clock.now())
    resp = await api.post("/v1/profiles", json=PROFILE, headers={"X-Api-Key": api_key})
    assert resp.status == 401
    assert await count_rows(sessions, Profile) == 0


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
async def test_a_live_key_in_either_header_is_accepted(api: Client, api_key: str, header: str) -> None:
    value = f"Bearer {api_key}" if header == "Authorization" else api_key
    resp = await api.post("/v1/profiles", json=PROFILE, headers={header: value})
    assert resp.status == 201


async def test_health_and_unsubscribe_links_need_no_key(api: Client) -> None:
    assert (await api.get("/health")).status == 200
    assert (await api.get("/u/not-a-token")).status == 400
    assert (await api.post("/u/not-a-token")).status == 400


async def test_an_unknown_route_without_a_key_answers_401_not_404(api: Client) -> None:
    assert (await api.get("/v1/nothing-here")).status == 401
