"""A webhook whose mapping fails is kept with its error and mapped again by `map_pending`
(`ecrm shop retry`); one whose job was lost with its process is mapped too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.settings import Settings
from ecrm.shops.base import Delivery
from ecrm.shops.jobs import map_pending, map_webhook
from ecrm.shops.models import ReceivedWebhook
from ecrm.shops.store import record_webhook
from tests.shops.conftest import Client, mapped
from tests.shops.payloads import shopify_checkout, shopify_order, shopify_request
from tests.shops.test_webhooks import post

Sessions = async_sessionmaker[AsyncSession]


async def only_row(sessions: Sessions) -> ReceivedWebhook:
    async with sessions() as session:
        return (await session.scalars(select(ReceivedWebhook))).one()


async def test_a_failed_mapping_keeps_the_body_and_error_and_stores_nothing_of_it(
        shop_api: Client, sessions: Sessions, shop_settings: Settings, clock: FrozenClock) -> None:
    response = await post(shop_api, "shopify", shopify_request("orders/create", shopify_order(currency="ZZZ")))
    await mapped(shop_api)
    assert response.status == 200  # stored: the shop must not resend it forever
    row = await only_row(sessions)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error is not None and "currency" in row.error and "ISO 4217" in row.error
    assert row.body is not None and '"ZZZ"' in row.body
    async with sessions() as session:
        assert await session.scalar(select(Order)) is None
    counts = await map_pending(sessions, shop_settings, clock.now(), clock.now())
    assert counts == {"mapped": 0, "failed": 1}
    assert (await only_row(sessions)).attempts == 2


@pytest.mark.parametrize(("topic", "payload", "says"), [
    ("orders/create", shopify_order(id=None), "WebhookPayloadError: the payload has no id"),
    ("checkouts/update", shopify_checkout(token=None, cart_token=None),
     "WebhookPayloadError: the checkout has no token"),
])
async def test_a_shopify_payload_without_its_id_fails_naming_it(shop_api: Client, sessions: Sessions, topic: str,
                                                                 payload: dict[str, Any], says: str) -> None:
    response = await post(shop_api, "shopify", shopify_request(topic, payload))
    await mapped(shop_api)
    assert response.status == 200
    row = await only_row(sessions)
    assert (row.status, row.error) == ("failed", says)


async def test_a_webhook_whose_job_was_lost_is_mapped_by_a_retry_once(sessions: Sessions, shop_settings: Settings,
                                                                      clock: FrozenClock) -> None:
    body, _headers = shopify_request("orders/create", shopify_order())
    async with sessions.begin() as session:
        webhook_id = await record_webhook(session, "shopify", Delivery("lost-1", "orders/create", "x"),
                                          body.decode(), clock.now())
    assert webhook_id is not None
    assert await map_pending(sessions, shop_settings, clock.now(), clock.now()) == {"mapped": 0, "failed": 0}
    clock.advance(timedelta(minutes=2))  # older than the cut-off now
    assert await map_pending(sessions, shop_settings, clock.now(), clock.now()) == {"mapped": 1, "failed": 0}
    assert await map_webhook(sessions, shop_settings, webhook_id, clock.now()) == "mapped"  # again: nothing
    row = await only_row(sessions)
    assert (row.status, row.attempts, row.body) == ("mapped", 1, None)
    async with sessions() as session:
        assert len(list(await session.scalars(select(Order)))) == 1


async def test_extreme_values_in_a_signed_payload_fail_its_mapping_not_the_request(
        shop_api: Client, sessions: Sessions) -> None:
    hostile = [
        shopify_order(total_price="1e400"), shopify_order(created_at="99999-01-01T00:00:00Z"),
        shopify_order(line_items=[{"name": "x", "price": "1.00", "quantity": 10**30}]),
        shopify_order(customer={"id": 10**400}), shopify_order(currency=None),
        shopify_order(total_price="-5.00"), shopify_order(line_items="not a list", customer="nobody", email=None),
    ]
    for n, payload in enumerate(hostile):
        response = await post(shop_api, "shopify", shopify_request("orders/create", payload, f"hostile-{n}"))
        assert response.status == 200
    await mapped(shop_api)
    async with sessions() as session:
        rows = list(await session.scalars(select(ReceivedWebhook).order_by(ReceivedWebhook.id)))
        assert await session.scalar(select(Order)) is None
    assert [row.status for row in rows] == ["failed"] * len(hostile)
    assert all(row.error and "Traceback" not in row.error for row in rows)
