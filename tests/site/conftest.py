"""Fixtures for the site script: settings with a site key, an allowed origin and an identify
secret, and the API under them."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.settings import Settings, SiteSettings

Client = TestClient[web.Request, web.Application]
SITE_KEY = "pk_test_shop_0001"
SHOP_ORIGIN = "https://shop.example"
IDENTIFY_SECRET = "identify-secret-0123456789"


def site_settings_for(settings: Settings, origins: tuple[str, ...] = (SHOP_ORIGIN,), **extra: object) -> Settings:
    site = SiteSettings.model_validate({"key": SITE_KEY, "allowed_origins": list(origins),
                                        "identify_secret": SecretStr(IDENTIFY_SECRET), **extra})
    return settings.model_copy(update={"site": site})


@pytest.fixture
def site_settings(settings: Settings) -> Settings:
    return site_settings_for(settings)


@pytest.fixture
async def site_api(aiohttp_client: AiohttpClient, site_settings: Settings, clock: FrozenClock) -> Client:
    return await aiohttp_client(create_app(site_settings, clock))
