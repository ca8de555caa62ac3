"""The List-Unsubscribe link: GET confirms, POST withdraws email consent once."""

from __future__ import annotations

import base64
import hmac
import struct
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.feedback.models import Response
from ecrm.feedback.unsubscribe import make_token
from ecrm.profiles.models import Consent, Profile
from ecrm.settings import Settings
from ecrm.types import ConsentState
from tests.api.conftest import Client
from tests.conftest import T0
from tests.factories import add_delivery
from tests.rows import count_rows

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


async def _delivery(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """A profile who consented to email and one delivery to them: (delivery_id, profile_id)."""
    async with sessions.begin() as session:
        profile = Profile(external_id="c-1", email="ana@example.com", created_at=T0, updated_at=T0)
        session.add(profile)
        await session.flush()
        session.add(Consent(profile_id=profile.id, channel="email", state=ConsentState.GRANTED, source="api",
                            updated_at=T0))
        delivery = await add_delivery(session, profile_id=profile.id)
        return delivery.id, profile.id


async def _email_consent(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    async with sessions() as session:
        consent = await session.scalar(select(Consent).where(Consent.channel == "email"))
    assert consent is not None
    return consent.state, consent.source


async def test_get_shows_a_form_that_posts_and_changes_nothing(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    token = make_token(settings.secret_key, *await _delivery(sessions))
    resp = await api.get(f"/u/{token}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert '<form method="post">' in await resp.text()
    assert await _email_consent(sessions) == ("granted", "api")
    assert await count_rows(sessions, Response) == 0


async def test_one_click_post_withdraws_email_consent_and_records_one_response(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    delivery_id, profile_id = await _delivery(sessions)
    clock.advance(timedelta(days=2))
    resp = await api.post(f"/u/{make_token(settings.secret_key, delivery_id, profile_id)}",
                          data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "You are unsubscribed" in await resp.text()
    assert await _email_consent(sessions) == ("withdrawn", "unsubscribe-link")
    async with sessions() as session:
        responses = list(await session.scalars(select(Response)))
        withdrawn = await session.scalar(select(Consent.updated_at))
    assert [(r.kind, r.delivery_id, r.profile_id, r.occurred_at) for r in responses] == [
        ("unsubscribed", delivery_id, profile_id, T0 + timedelta(days=2))]
    assert withdrawn == T0 + timedelta(days=2)


async def test_posting_the_same_link_twice_or_with_an_empty_body_records_one_response(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    token = make_token(settings.secret_key, *await _delivery(sessions))
    first = await api.post(f"/u/{token}", data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    second = await api.post(f"/u/{token}")
    assert (first.status, second.status) == (200, 200)
    assert await count_rows(sessions, Response) == 1
    assert await _email_consent(sessions) == ("withdrawn", "unsubscribe-link")


async def test_a_tampered_token_answers_400_and_stores_nothing(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id, profile_id = await _delivery(sessions)
    token = make_token(settings.secret_key, delivery_id, profile_id)
    tampered = ("B" if token[0] != "B" else "C") + token[1:]
    forged = make_token("another-secret-key-of-16+", delivery_id, profile_id)
    for bad in (tampered, forged, token[:-4]):
        resp = await api.post(f"/u/{bad}", data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert resp.status == 400
        assert "not valid" in await resp.text()
    assert await _email_consent(sessions) == ("granted", "api")
    assert await count_rows(sessions, Response) == 0


def first_format_token(secret: str, delivery_id: int, profile_id: int) -> str:
    """A link as the first releases wrote it: base64url of zero-padded ids and the tag."""
    body = struct.pack(">QQ", delivery_id, profile_id)
    tag = hmac.digest(secret.encode(), b"unsubscribe:" + body, "sha256")[:16]
    return base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()


async def test_a_link_of_the_first_token_format_still_unsubscribes(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id, profile_id = await _delivery(sessions)
    token = first_format_token(settings.secret_key, delivery_id, profile_id)
    assert token.startswith("AAAAAAAA") and make_token(settings.secret_key, delivery_id, profile_id) != token
    resp = await api.post(f"/u/{token}", data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert resp.status == 200 and "You are unsubscribed" in await resp.text()
    assert await _email_consent(sessions) == ("withdrawn", "unsubscribe-link")


async def test_a_signed_link_naming_ids_past_bigint_answers_400(
        api: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    for token in (first_format_token(settings.secret_key, 2**64 - 1, 2**63),
                  make_token(settings.secret_key, 2**64 - 1, 1)):
        resp = await api.post(f"/u/{token}", data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert resp.status == 400 and "not valid" in await resp.text()
