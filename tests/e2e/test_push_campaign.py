"""YAML -> push campaign -> the local push service, end to end, on SQLite and PostgreSQL: the
plaintext each browser decrypts, and what a 404/410 does to the subscription."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.load import load_campaign
from ecrm.deliveries.models import Delivery
from ecrm.local import launch_in_process
from ecrm.peers.push_service import BrowserSubscription, PushService
from ecrm.push.models import PushSubscription
from ecrm.render.push import click_signer
from ecrm.settings import Settings
from tests.factories import add_profile
from tests.push_factories import grant, subscribe
from tests.webpush import service, with_push

__all__ = ["service"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "back_in_stock_push.yaml"


@pytest.fixture
def push_settings(settings: Settings) -> Settings:
    return with_push(settings).model_copy(update={
        "send": settings.send.model_copy(update={"batch_size": 3, "retry_delay": 0.0, "max_tries": 4}),
        "public_url": "https://crm.shop.example",
    })


async def customer(sessions: async_sessionmaker[AsyncSession], service: PushService, name: str, locale: str = "en",
                   browsers: int = 1) -> tuple[int, list[BrowserSubscription]]:
    profile_id = await add_profile(sessions, external_id=name, locale=locale, first_name=name.title(),
                                   traits={"wished_item": "Blue kettle"})
    await grant(sessions, profile_id, "push")
    subs = [service.subscribe() for _ in range(browsers)]
    for sub in subs:
        await subscribe(sessions, profile_id, sub)
    return profile_id, subs


async def test_each_browser_decrypts_its_own_notification_in_the_profile_language(
    push_settings: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService
) -> None:
    sara, [sara_sub] = await customer(sessions, service, "sara", "fa")
    emma, emma_subs = await customer(sessions, service, "emma", "en", browsers=2)
    await add_profile(sessions, external_id="email-only")  # no subscription: not in the audience
    no_consent = await add_profile(sessions, external_id="no-push-consent")
    await subscribe(sessions, no_consent, service.subscribe())

    spec = load_campaign(CAMPAIGN, push_settings)
    await launch_in_process(push_settings, spec, str(CAMPAIGN))

    assert service.refused == []
    got = {r.number: r.json() for r in service.received}
    assert set(got) == {sara_sub.number, *(s.number for s in emma_subs)}
    assert got[sara_sub.number]["title"] == "Sara عزیز، دوباره موجود شد!"
    assert got[sara_sub.number]["lang"] == "fa"
    assert got[emma_subs[0].number]["title"] == "Back in stock, Emma!"
    assert got[emma_subs[0].number]["body"] == "Blue kettle is back. Only a few left."
    assert got[emma_subs[0].number]["url"].endswith("utm_campaign=back-in-stock-push")
    assert {r.headers["Topic"] for r in service.received} == {"back-in-stock"}
    async with sessions() as session:
        deliveries = {d.profile_id: d for d in await session.scalars(select(Delivery))}
    assert set(deliveries) == {sara, emma}
    assert {(d.channel, d.status, d.provider) for d in deliveries.values()} == {("push", "sent", "webpush")}
    report = got[sara_sub.number]["report"]
    token = report.removeprefix("https://crm.shop.example/push/clicks/")
    assert token != report and click_signer(push_settings.secret_key).sign(deliveries[sara].id, sara) == token


async def test_a_410_deletes_the_subscription_and_a_5xx_is_retried_until_accepted(
    push_settings: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService
) -> None:
    gone_id, [gone] = await customer(sessions, service, "gone")
    half_id, [kept, expired] = await customer(sessions, service, "half", browsers=2)
    busy_id, [busy] = await customer(sessions, service, "busy")
    service.script = {gone.number: [410], expired.number: [404], busy.number: [503, 500]}

    spec = load_campaign(CAMPAIGN, push_settings)
    _, queue = await launch_in_process(push_settings, spec, str(CAMPAIGN))

    assert queue.failed == []
    assert sorted(r.number for r in service.received) == sorted([kept.number, busy.number])
    async with sessions() as session:
        left = set(await session.scalars(select(PushSubscription.endpoint)))
        rows = await session.execute(select(Delivery.profile_id, Delivery.status))
        statuses = {row.profile_id: row.status for row in rows}
    assert left == {kept.endpoint, busy.endpoint}
    assert statuses == {gone_id: "failed", half_id: "sent", busy_id: "sent"}


async def test_launching_again_sends_nothing_new(
    push_settings: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService
) -> None:
    for name in ("a", "b", "c", "d"):
        await customer(sessions, service, name)
    spec = load_campaign(CAMPAIGN, push_settings)
    await launch_in_process(push_settings, spec, str(CAMPAIGN))
    await launch_in_process(push_settings, spec, str(CAMPAIGN))
    assert sorted(service.per_endpoint.values()) == [1, 1, 1, 1]
