"""Fixtures for shop webhooks: the API with both shops' secrets, and the in-process queue the
mapping jobs run on."""

from __future__ import annotations

from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from ecrm.api.app import create_app
from ecrm.api.keys import SHOP_JOBS, SHOP_WEBHOOKS
from ecrm.clock import FrozenClock
from ecrm.queue import InProcessQueue
from ecrm.settings import Settings, ShopSettings
from tests.shops.payloads import SHOPIFY_SECRET, WOO_SECRET

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def shop_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"shops": ShopSettings(shopify_secret=SecretStr(SHOPIFY_SECRET),
                                                             woocommerce_secret=SecretStr(WOO_SECRET))})


@pytest.fixture
async def shop_api(aiohttp_client: AiohttpClient, shop_settings: Settings, clock: FrozenClock) -> Client:
    return await aiohttp_client(create_app(shop_settings, clock))


async def mapped(client: Client) -> None:
    """Wait until every mapping job the requests so far queued, or will queue, has run."""
    await client.app[SHOP_WEBHOOKS].settle()
    await cast(InProcessQueue, client.app[SHOP_JOBS]).join()
