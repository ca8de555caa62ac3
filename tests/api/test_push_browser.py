"""The subscribe script and the service worker in headless Chromium, driven over the DevTools
protocol: a shop page on one origin subscribes through ecrm's script on another (a subscribe
token, CORS, no API key), a push message reaches the service worker, which shows the
notification, and a click on it is reported back. Offline there is no browser push service, so
`PushManager.subscribe` is replaced in the page by one that returns a subscription with real
keys: the edge between the browser and its vendor's push service."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import SYSTEM_CLOCK
from ecrm.feedback.models import Response
from ecrm.peers.push_service import PushService
from ecrm.profiles.models import Consent, Profile
from ecrm.push import vapid
from ecrm.push.models import PushSubscription
from ecrm.push.subscribe_tokens import make_token
from ecrm.render.push import click_signer
from ecrm.settings import Settings
from tests.factories import add_delivery, add_profile
from tests.webpush import with_push

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
KEYS = vapid.new_key_pair()
ENDPOINT = "https://push.example/send/abc123"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script src="{crm}/push/subscribe.js"></script></head><body>shop</body></html>"""
FAKE_PUSH_SERVICE = """
PushManager.prototype.getSubscription = async function () {{ return null; }};
PushManager.prototype.subscribe = async function (options) {{
  window.applicationServerKey = btoa(String.fromCharCode(...new Uint8Array(options.applicationServerKey)));
  const json = {subscription};
  return {{endpoint: json.endpoint, toJSON: () => json}};
}};
"""

SPY = """self.addEventListener("push", (event) => { self.pushed = event.data.text(); });
const show = self.registration.showNotification.bind(self.registration);
self.registration.showNotification = (title, options) => {
  self.shown = JSON.stringify({title, body: options.body, lang: options.lang, data: options.data});
  return show(title, options);
};
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Devtools:
    """A minimal Chrome DevTools protocol client over aiohttp's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.ids = ws, itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future = self.pending[number] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": number, "method": method, "params": params,
                                 **({"sessionId": session} if session else {})})
        answer = await asyncio.wait_for(future, 20)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", session, expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def event(self, method: str) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                for event in self.events:
                    if event.get("method") == method:
                        self.events.remove(event)
                        return event
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Devtools]:
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode(errors="replace")
            if not line:
                raise RuntimeError("chromium exited before DevTools listened")
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            tools = Devtools(ws)
            yield tools
            tools.reader.cancel()
    finally:
        process.terminate()
        await process.wait()


def shop_app(crm: str) -> web.Application:
    """The shop's origin: its page, and a service worker that imports ecrm's."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(crm=crm), content_type="text/html")

    async def worker(request: web.Request) -> web.Response:
        # the shop's worker imports ecrm's, as README says; the test's prelude notes each push it gets and
        # what the worker shows (headless Chromium keeps no reliable list of shown notifications)
        return web.Response(text=SPY + f'importScripts("{crm}/push/sw.js");\n', content_type="application/javascript")

    app.router.add_get("/", page)
    app.router.add_get("/sw.js", worker)
    return app


async def test_a_shop_page_subscribes_gets_a_notification_and_reports_its_click(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    crm_port, shop_port = free_port(), free_port()
    crm, shop = f"http://127.0.0.1:{crm_port}", f"http://127.0.0.1:{shop_port}"
    settings = with_push(settings, KEYS).model_copy(update={"public_url": crm})
    token = make_token(settings.secret_key, "c-1", int(SYSTEM_CLOCK.now().timestamp()) + 600)
    browser_keys = PushService().subscribe().to_json()["keys"]
    subscription = json.dumps({"endpoint": ENDPOINT, "expirationTime": None, "keys": browser_keys})

    async with serving(create_app(settings), crm_port), serving(shop_app(crm), shop_port), \
            chromium(tmp_path / "profile") as tools:
        await tools.call("Browser.grantPermissions", origin=shop, permissions=["notifications"])
        target = await tools.call("Target.createTarget", url="about:blank")
        page = (await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
        await tools.call("Page.enable", page)
        await tools.call("ServiceWorker.enable", page)
        await tools.call("Page.addScriptToEvaluateOnNewDocument", page,
                         source=FAKE_PUSH_SERVICE.format(subscription=subscription))
        await tools.call("Page.navigate", page, url=shop + "/")
        await tools.event("Page.loadEventFired")

        endpoint = await tools.evaluate(page, f'ecrmPush.subscribe({{token: "{token}", serviceWorker: "/sw.js"}})'
                                              ".then((s) => s.endpoint)")
        assert endpoint == ENDPOINT
        assert await tools.evaluate(page, "window.applicationServerKey") == \
            base64.b64encode(vapid.b64url_decode(KEYS.public_key)).decode()

        async with sessions() as session:
            stored = (await session.execute(select(Profile.external_id, PushSubscription.endpoint).join(Profile))).all()
            consent = (await session.execute(select(Consent.channel, Consent.state))).all()
        assert [tuple(r) for r in stored] == [("c-1", ENDPOINT)]
        assert [tuple(c) for c in consent] == [("push", "granted")]

        profile_id = await add_profile(sessions, external_id="c-2")
        async with sessions.begin() as session:
            delivery = await add_delivery(session, profile_id=profile_id)
        report = f"{crm}/push/clicks/{click_signer(settings.secret_key).sign(delivery.id, profile_id)}"
        payload = {"title": "Back in stock, Sara!", "body": "Blue kettle", "url": shop + "/", "lang": "en",
                   "report": report}
        registration = await registration_id(tools, shop)
        worker = await service_worker_session(tools)
        await tools.call("ServiceWorker.deliverPushMessage", page, origin=shop + "/", registrationId=registration,
                         data=json.dumps(payload))
        assert json.loads(await until(tools, worker, "self.pushed")) == payload  # the shop's worker saw it arrive
        shown = json.loads(await until(tools, worker, "self.shown"))
        assert shown == {"title": "Back in stock, Sara!", "body": "Blue kettle", "lang": "en",
                         "data": {"url": shop + "/", "report": report}}

        # a click: the event the browser fires, with the notification's data
        await tools.evaluate(worker, "(() => { const event = new Event('notificationclick'); "
                                     "event.notification = {close() {}, data: JSON.parse(self.shown).data}; "
                                     "event.waitUntil = (promise) => promise.catch(() => undefined); "
                                     "self.dispatchEvent(event); return true; })()")
        assert await clicked(sessions) == [("clicked", delivery.id)]


async def registration_id(tools: Devtools, origin: str) -> str:
    async with asyncio.timeout(20):
        while True:
            event = await tools.event("ServiceWorker.workerVersionUpdated")
            for version in event["params"]["versions"]:
                if version["scriptURL"].startswith(origin) and version["status"] == "activated":
                    return str(version["registrationId"])


async def until(tools: Devtools, session: str, expression: str) -> Any:
    """The value of `expression` once it is truthy."""
    async with asyncio.timeout(20):
        while True:
            value = await tools.evaluate(session, expression)
            if value:
                return value
            await asyncio.sleep(0.1)


async def service_worker_session(tools: Devtools) -> str:
    async with asyncio.timeout(20):
        while True:
            targets = (await tools.call("Target.getTargets"))["targetInfos"]
            workers = [t for t in targets if t["type"] == "service_worker"]
            if workers:
                attached = await tools.call("Target.attachToTarget", targetId=workers[0]["targetId"], flatten=True)
                return str(attached["sessionId"])
            await asyncio.sleep(0.1)


async def clicked(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, int | None]]:
    async with asyncio.timeout(20):
        while True:
            async with sessions() as session:
                rows = (await session.execute(select(Response.kind, Response.delivery_id))).all()
            if rows:
                return [(str(kind), delivery) for kind, delivery in rows]
            await asyncio.sleep(0.1)
