"""The browser's side of web push, public (no API key) and open to any origin (CORS), since it
runs on the shop's pages:

- `GET /push/sw.js`: the service worker (shows notifications, reports clicks).
- `GET /push/subscribe.js`: the subscribe script, with this server's URL and VAPID public key.
- `POST /push/subscriptions` `{token, subscription, user_agent?}`: store the subscription for the
  profile a subscribe token names (`push.subscribe_tokens`) and grant push consent (the browser
  just asked the person for permission); 201 new, 200 already stored, 403 for a bad token.
- `POST /push/unsubscribe` `{endpoint}`: remove it (the endpoint is the secret); 204 or 404.
- `POST /push/clicks/{token}`: a click, recorded as a `clicked` response; 204, or 404.
- `POST /v1/push/tokens` `{external_id}` (an `ingest` key, from the shop's backend): a token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from ecrm.api.body import read_model
from ecrm.api.errors import error_response, invalid_input
from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS
from ecrm.api.push import remove_subscription, subscription_json
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.feedback.unsubscribe import InvalidTokenError
from ecrm.feedback.unsubscribe import read_token as read_click_token
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.profiles.ingest import Text
from ecrm.push.clicks import record_click
from ecrm.push.subscribe_tokens import LIFETIME, InvalidSubscribeToken, make_token, read_token
from ecrm.push.subscriptions import SubscribeIn, SubscriptionIn, UnsubscribeIn, UserAgent, subscribe
from ecrm.types import ChannelKind, ConsentState

routes = web.RouteTableDef()
CONSENT_SOURCE = "push-subscribe"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "86400"}
MAX_ID = 2**63 - 1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PublicSubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    subscription: SubscriptionIn
    user_agent: UserAgent | None = None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: Text


def cors(handler: Handler) -> Handler:
    """Answers with CORS headers, errors included (a browser hides an error without them)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, str(exc), **({"field": exc.field} if exc.field else {}))
        except ValidationError as exc:
            response = invalid_input(exc)
        response.headers.update(CORS)
        return response
    return wrapped


@cache
def _static(name: str) -> str:
    return files("ecrm.push").joinpath("static", name).read_text(encoding="utf-8")


def _script(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=300", **CORS})


@routes.get("/push/sw.js")
@operation("The web push service worker, imported by the shop's own /sw.js", responses={200: None},
           content_type="text/javascript")
async def service_worker(request: web.Request) -> web.Response:
    return _script(_static("sw.js"))


@routes.get("/push/subscribe.js")
@operation("The subscribe script, with this server's URL and VAPID public key", responses={200: None, 404: ErrorOut},
           content_type="text/javascript")
async def subscribe_script(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.push.vapid_public_key:
        raise ApiError(404, "web push is not set up on this server: run `ecrm push keys` and set push:")
    text = (_static("subscribe.js").replace('"__ECRM_API__"', json.dumps(settings.public_url.rstrip("/")))
            .replace('"__ECRM_VAPID_KEY__"', json.dumps(settings.push.vapid_public_key)))
    return _script(text)


@routes.route("OPTIONS", "/push/subscriptions")
@routes.route("OPTIONS", "/push/unsubscribe")
@routes.route("OPTIONS", "/push/clicks/{token}")
@operation("CORS preflight of the browser's web push routes", responses={204: None})
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


@routes.post("/push/subscriptions")
@operation("A browser stores its push subscription with a subscribe token (grants push consent)", PublicSubscribeIn,
           {200: None, 201: None, 403: ErrorOut, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
@cors
async def post_public_subscription(request: web.Request) -> web.StreamResponse:
    data = await read_model(request, PublicSubscribeIn)
    try:
        external_id = read_token(request.app[SETTINGS].secret_key, data.token, request.app[CLOCK].now().timestamp())
    except InvalidSubscribeToken as exc:
        raise ApiError(403, str(exc), field="token") from None
    stored = SubscribeIn(external_id=external_id, subscription=data.subscription, user_agent=data.user_agent)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS].begin() as session:
        sub, created = await subscribe(session, stored, now)
        grant = ConsentChange(sub.profile_id, ChannelKind.PUSH, ConsentState.GRANTED, CONSENT_SOURCE)
        await set_consents(session, [grant], now)
    return web.json_response(subscription_json(sub, external_id), status=201 if created else 200)


@routes.post("/push/unsubscribe")
@operation("A browser removes its push subscription by endpoint", UnsubscribeIn,
           {204: None, 404: ErrorOut, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
@cors
async def post_public_unsubscribe(request: web.Request) -> web.StreamResponse:
    return await remove_subscription(request)


@routes.post("/push/clicks/{token}")
@operation("The service worker reports a click on a notification", responses={204: None, 404: ErrorOut})
@cors
async def post_click(request: web.Request) -> web.StreamResponse:
    secret = request.app[SETTINGS].secret_key + ":push-click"
    try:
        delivery_id, profile_id = read_click_token(secret, request.match_info["token"])
    except InvalidTokenError:
        raise ApiError(404, "this click link is not valid") from None
    if max(delivery_id, profile_id) > MAX_ID:
        raise ApiError(404, "this click link is not valid")
    async with request.app[SESSIONS].begin() as session:
        recorded = await record_click(session, delivery_id, profile_id, request.app[CLOCK].now())
    if not recorded:
        raise ApiError(404, "the delivery this click belongs to is gone")
    return web.Response(status=204)


@routes.post("/v1/push/tokens")
@operation("A short-lived subscribe token for a logged-in customer (for the subscribe script)", TokenIn,
           {201: None, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_token(request: web.Request) -> web.Response:
    data = await read_model(request, TokenIn)
    expires = int(request.app[CLOCK].now().timestamp()) + LIFETIME
    token = make_token(request.app[SETTINGS].secret_key, data.external_id, expires)
    return web.json_response({"token": token, "expires_at": expires}, status=201)
