"""With Redis configured, the API queues the mapping on arq and `ecrm worker` maps it; two
deliveries of one webhook at the same instant are stored and mapped once."""

from __future__ import annotations

import asyncio
import io

from arq import ArqRedis
from pytest_aiohttp import AiohttpClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.profiles.models import Event
from ecrm.settings import Settings
from ecrm.shops.models import ReceivedWebhook
from tests.conftest import REDIS_URL
from tests.shops.conftest import Client, mapped
from tests.shops.payloads import shopify_checkout, shopify_order, shopify_request
from tests.workers import work_until_idle

Sessions = async_sessionmaker[AsyncSession]


async def test_the_worker_maps_what_the_api_queued_on_redis(aiohttp_client: AiohttpClient, shop_settings: Settings,
                                                            clock: FrozenClock, redis: ArqRedis,
                                                            sessions: Sessions) -> None:
    settings = shop_settings.model_copy(update={"redis_url": REDIS_URL})
    client = await aiohttp_client(create_app(settings, clock))
    body, headers = shopify_request("orders/create", shopify_order())
    assert (await client.post("/webhooks/shopify", data=body, headers=headers)).status == 200
    async with sessions() as session:
        assert await session.scalar(select(ReceivedWebhook.status)) == "received"
    await work_until_idle(settings)
    async with sessions() as session:
        assert await session.scalar(select(ReceivedWebhook.status)) == "mapped"
        assert await session.scalar(select(Order.order_id)) == "shopify:820982911946154508"


async def test_two_deliveries_at_once_are_stored_and_mapped_once(shop_api: Client, sessions: Sessions) -> None:
    body, headers = shopify_request("checkouts/create", shopify_checkout(), "twice")
    responses = await asyncio.gather(*[shop_api.post("/webhooks/shopify", data=io.BytesIO(body), headers=headers)
                                       for _ in range(4)])
    await mapped(shop_api)
    assert sorted(r.status for r in responses) == [200] * 4
    assert sum([(await r.json()).get("duplicate", False) for r in responses]) == 3
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ReceivedWebhook)) == 1
        assert await session.scalar(select(func.count()).select_from(Event)) == 1


async def test_with_redis_down_a_webhook_is_still_stored_and_answered(aiohttp_client: AiohttpClient,
                                                                     shop_settings: Settings, clock: FrozenClock,
                                                                     sessions: Sessions, unused_tcp_port: int) -> None:
    settings = shop_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{unused_tcp_port}/0"})
    client = await aiohttp_client(create_app(settings, clock))
    body, headers = shopify_request("orders/create", shopify_order())
    response = await client.post("/webhooks/shopify", data=body, headers=headers)
    assert response.status == 200  # stored; `ecrm shop retry` maps it
    async with sessions() as session:
        assert await session.scalar(select(ReceivedWebhook.status)) == "received"
