"""The site script in headless Chromium (Debian's `chromium`), against a shop page and the API
served by the test on two origins: nothing is sent and no cookie written before consent; with
consent, page and product views arrive under a first-party visitor cookie; the visitor merges
into their profile through a form and through a tracked email link. Screenshots go to
test-artifacts/site/ (git-ignored)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.profiles.models import Event, Profile
from ecrm.settings import Settings
from ecrm.site.identity import make_click_token
from tests.conftest import ROOT
from tests.factories import add_profile
from tests.site.conftest import SITE_KEY, site_settings_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts" / "site"
Sessions = async_sessionmaker[AsyncSession]
ServerFactory = Callable[..., Awaitable[TestServer]]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install -y chromium fonts-noto-core; .ci/run installs it)")

PAGE = """<!doctype html><html lang="th"><head><meta charset="utf-8"><title>{title}</title>
<script>window.ecrm=window.ecrm||function(){{(ecrm.q=ecrm.q||[]).push(arguments)}};
ecrm('init', '{key}');
{calls}
</script>
<script async src="{api}/t.js"></script></head>
<body style="font-family: 'Noto Sans Thai', sans-serif"><h1>{title}</h1>
<p>หมวกกันแดด: ฿590</p>
{extra}
<script>setTimeout(function () {{
  document.body.setAttribute('data-cookie', document.cookie);
  document.body.setAttribute('data-search', location.search);
}}, 1500);</script>
</body></html>"""
FORM = """<form data-ecrm-identify onsubmit="event.preventDefault()">
<input type="email" name="email" value="ann@example.com"><button>Subscribe</button></form>
<script>setTimeout(function () { document.querySelector('form').requestSubmit(); }, 300);</script>"""


class Shop:
    """The shop's pages on their own origin, each page's inline calls given by the test."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.app = web.Application()
        self.app.router.add_get("/{name}", self._page)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.pages[request.match_info["name"]], content_type="text/html")


async def chromium(url: str, profile_dir: Path, screenshot: Path | None = None) -> str:
    """Load `url` in headless Chromium with a persistent profile (its cookies); the DOM after
    the page's timers ran, or "" when taking a screenshot instead."""
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={profile_dir}", "--virtual-time-budget=4000", "--window-size=800,600"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    process = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def body_attribute(dom: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', dom)
    assert found is not None, dom[-2000:]
    return html.unescape(found.group(1))


async def owners(sessions: Sessions) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.external_id, Event.name)
                                     .join(Event, Event.profile_id == Profile.id).order_by(Event.id))
        return [(external_id, name) for external_id, name in rows]


@dataclass
class Served:
    shop: Shop
    shop_url: str  # the shop's origin, the one allowed origin
    api_url: str  # another origin: the script's own
    seen: list[str]  # paths the API answered
    settings: Settings

    def page(self, name: str, calls: list[Any], extra: str = "") -> str:
        """A shop page named `name` whose inline script makes `calls`; its URL."""
        lines = "\n".join(f"ecrm({', '.join(json.dumps(arg) for arg in call)});" for call in calls)
        self.shop.pages[name] = PAGE.format(title=name, key=SITE_KEY, calls=lines, api=self.api_url, extra=extra)
        return f"{self.shop_url}/{name}"


@pytest.fixture
async def served(aiohttp_server: ServerFactory, settings: Settings, clock: FrozenClock) -> Served:
    shop = Shop()
    shop_url = f"http://127.0.0.1:{(await aiohttp_server(shop.app)).port}"
    site_settings = site_settings_for(settings, origins=(shop_url,))
    api_app = create_app(site_settings, clock)
    seen: list[str] = []

    async def note(request: web.Request, _response: web.StreamResponse) -> None:
        seen.append(request.path)

    api_app.on_response_prepare.append(note)
    api_url = f"http://localhost:{(await aiohttp_server(api_app)).port}"
    return Served(shop, shop_url, api_url, seen, site_settings)


VIEWS: list[Any] = [["page"], ["product", {"id": "42", "sku": "HAT-1", "name": "หมวก", "price": "590.00",
                                           "currency": "THB"}]]


async def test_the_script_waits_for_consent_then_tracks_and_merges_the_visitor(
        served: Served, sessions: Sessions, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = tmp_path / "browser"  # one browser profile throughout: its cookie jar
    await add_profile(sessions, external_id="shopify:1", email="ann@example.com")

    before = served.page("before-consent", VIEWS)
    dom = await chromium(before, browser)
    await chromium(before, tmp_path / "shot", ARTIFACTS / "before-consent.png")
    assert body_attribute(dom, "data-cookie") == ""
    assert "/t.js" in served.seen and "/t/collect" not in served.seen
    assert await owners(sessions) == []

    dom = await chromium(served.page("with-consent", [["consent", True], *VIEWS]), browser)
    visitor = re.fullmatch(r"ecrm_vid=([0-9a-f]{32})", body_attribute(dom, "data-cookie"))
    assert visitor is not None
    anonymous = f"anon:{visitor.group(1)}"
    assert await owners(sessions) == [(anonymous, "page_viewed"), (anonymous, "product_viewed")]

    await chromium(served.page("form", [["consent", True]], extra=FORM), browser, ARTIFACTS / "form.png")
    assert await owners(sessions) == [("shopify:1", "page_viewed"), ("shopify:1", "product_viewed")]
    async with sessions() as session:
        assert await session.scalar(select(Profile.id).where(Profile.external_id == anonymous)) is None


async def test_a_tracked_email_link_identifies_a_new_visitor_and_leaves_the_address_bar(
        served: Served, sessions: Sessions, tmp_path: Path) -> None:
    customer = await add_profile(sessions, external_id="crm-7")
    token = make_click_token(served.settings.secret_key, customer)
    landing = served.page("landing", [["consent", True], ["page"]])
    dom = await chromium(f"{landing}?utm_source=email&ecrm_c={token}", tmp_path / "browser")
    assert body_attribute(dom, "data-search") == "?utm_source=email"
    assert await owners(sessions) == [("crm-7", "page_viewed")]
