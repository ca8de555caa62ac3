"""The webhook mapper process of `ecrm serve --workers N` on PostgreSQL without Redis
(`ecrm.shops.mapper`): an API that only wakes it stores and acknowledges; the mapper maps what
the API stored when notified, maps at start what was stored while it was down, in the order
received, and keeps going when mapping fails; `serve` starts it at a lower CPU priority and
stops it with the workers."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import psutil
import pytest
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.api.keys import SHOP_WEBHOOKS
from ecrm.clock import FrozenClock
from ecrm.pg_pool import asyncpg_dsn
from ecrm.profiles.models import Event
from ecrm.settings import Settings
from ecrm.shops.jobs import map_received
from ecrm.shops.mapper import CHANNEL, Mapper
from ecrm.shops.models import ReceivedWebhook
from tests.api.test_app import _free_port
from tests.api.test_serve_workers import start_serving, stop_serving
from tests.shops.conftest import Client
from tests.shops.payloads import SHOPIFY_SECRET, shopify_checkout, shopify_customer, shopify_order, shopify_request
from tests.waiting import wait_until

Sessions = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.usefixtures("postgresql_only")


@pytest.fixture
def postgresql_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the mapper process listens with PostgreSQL's LISTEN/NOTIFY")


@pytest.fixture
async def storing_api(aiohttp_client: AiohttpClient, shop_settings: Settings, clock: FrozenClock) -> Client:
    """The API of `serve`'s workers: it stores and acknowledges webhooks and wakes the mapper."""
    return await aiohttp_client(create_app(shop_settings, clock, shop_mapper=True))


@asynccontextmanager
async def mapper(settings: Settings, clock: FrozenClock, poll: float = 60.0) -> AsyncIterator[None]:
    """A mapper running on this loop, listening before this yields, cancelled after."""
    task = asyncio.create_task(Mapper(settings, clock, poll=poll).run())
    try:
        await wait_until(lambda: listeners(settings.database_url), "the mapper listens")
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def listeners(database_url: str) -> bool:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return bool(await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
            f'LISTEN "{CHANNEL}"'))
    finally:
        await connection.close()


async def statuses(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(ReceivedWebhook.status).order_by(ReceivedWebhook.id)))


def all_mapped(sessions: Sessions, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await statuses(sessions) == ["mapped"] * n
    return check


async def post(client: Client, request: tuple[bytes, dict[str, str]]) -> None:
    body, headers = request
    response = await client.post("/webhooks/shopify", data=io.BytesIO(body), headers=headers)
    assert response.status == 200, await response.text()


async def test_the_api_only_stores_and_the_mapper_maps_when_woken(storing_api: Client, sessions: Sessions,
                                                                  shop_settings: Settings,
                                                                  clock: FrozenClock) -> None:
    async with mapper(shop_settings, clock):  # polls once a minute: only the notification wakes it in time
        await post(storing_api, shopify_request("orders/create", shopify_order()))
        await storing_api.app[SHOP_WEBHOOKS].settle()  # the NOTIFY
        await wait_until(all_mapped(sessions, 1), "the webhook is mapped")


async def test_webhooks_stored_while_no_mapper_runs_are_mapped_in_order_when_it_starts(
        storing_api: Client, sessions: Sessions, shop_settings: Settings, clock: FrozenClock) -> None:
    await post(storing_api, shopify_request("checkouts/create", shopify_checkout(), "w-1"))
    await post(storing_api, shopify_request("checkouts/update", shopify_checkout(total_price="1.00"), "w-2"))
    await storing_api.app[SHOP_WEBHOOKS].settle()  # notified nobody
    await asyncio.sleep(0.2)
    assert await statuses(sessions) == ["received", "received"]
    async with mapper(shop_settings, clock):
        await wait_until(all_mapped(sessions, 2), "the webhooks are mapped")
    async with sessions() as session:
        assert list(await session.scalars(select(Event.name).order_by(Event.id))) == \
            ["checkout_started", "cart_updated"]


async def test_the_mapper_keeps_going_when_mapping_fails(storing_api: Client, sessions: Sessions,
                                                         shop_settings: Settings, clock: FrozenClock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    async def down_once(*args: object) -> object:
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionRefusedError("the database is restarting")
        return await map_received(*args)  # type: ignore[arg-type]

    monkeypatch.setattr("ecrm.shops.mapper.map_received", down_once)
    await post(storing_api, shopify_request("orders/create", shopify_order()))
    async with mapper(shop_settings, clock, poll=0.05):
        await wait_until(all_mapped(sessions, 1), "the webhook is mapped at the next look")
    assert len(calls) >= 2


async def _post_when_up(port: int, request: tuple[bytes, dict[str, str]]) -> None:
    body, headers = request
    async with asyncio.timeout(20), aiohttp.ClientSession() as client:
        while True:
            try:
                async with client.post(f"http://127.0.0.1:{port}/webhooks/shopify", data=body,
                                       headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


async def test_serve_maps_in_a_mapper_process_at_a_lower_priority_and_stops_it(settings: Settings,
                                                                              sessions: Sessions) -> None:
    port = _free_port()
    server = start_serving(settings, port, ECRM_SHOPS__SHOPIFY_SECRET=SHOPIFY_SECRET, ECRM_REDIS_URL="")
    children: list[psutil.Process] = []
    try:
        await _post_when_up(port, shopify_request("orders/create", shopify_order(customer=shopify_customer(id=7))))
        await wait_until(all_mapped(sessions, 1), "the mapper process maps it")
        children = psutil.Process(server.pid).children()
        [mapper_process] = [child for child in children if "--mapper" in child.cmdline()]
        assert len(children) == 3
        assert mapper_process.nice() == os.nice(0) + settings.send.campaign_nice
        assert all(child.nice() == os.nice(0) for child in children if child != mapper_process)
    finally:
        out = await stop_serving(server, [child.pid for child in children])
    assert f"and a webhook mapper (pid {mapper_process.pid})" in out
