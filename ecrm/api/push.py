"""`/v1/push/subscriptions`: store a browser's web push subscription for a profile, or remove it.

POST takes `{external_id, subscription: {endpoint, keys: {p256dh, auth}}, user_agent?}`, the
`subscription` being the browser's `PushSubscription.toJSON()`: 201 when the endpoint is new,
200 when it was stored already (updated, and re-pointed to this profile). DELETE takes
`{endpoint}` in the body (the same JSON the subscribe script has at hand): 204, or 404 when no
subscription has that endpoint. Validation: see `ecrm.push.subscriptions`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, SESSIONS
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.push.models import PushSubscription
from ecrm.push.subscriptions import SubscribeIn, UnsubscribeIn, subscribe, unsubscribe

routes = web.RouteTableDef()


def subscription_json(sub: PushSubscription, external_id: str) -> dict[str, Any]:
    return {"external_id": external_id, "endpoint": sub.endpoint, "user_agent": sub.user_agent,
            "created_at": sub.created_at.isoformat()}


@routes.post("/v1/push/subscriptions")
@operation("Store a browser's web push subscription for a profile", SubscribeIn,
           {200: None, 201: None, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_subscription(request: web.Request) -> web.Response:
    data = await read_model(request, SubscribeIn)
    async with request.app[SESSIONS].begin() as session:
        sub, created = await subscribe(session, data, request.app[CLOCK].now())
    return web.json_response(subscription_json(sub, data.external_id), status=201 if created else 200)


@routes.delete("/v1/push/subscriptions")
@operation("Remove a web push subscription", UnsubscribeIn,
           {204: None, 400: ErrorOut, 404: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def delete_subscription(request: web.Request) -> web.Response:
    return await remove_subscription(request)


async def remove_subscription(request: web.Request) -> web.Response:
    """Delete the subscription whose endpoint the body names (this route's and the browsers'
    `/push/unsubscribe`); 404 naming `endpoint` when none has it."""
    data = await read_model(request, UnsubscribeIn)
    async with request.app[SESSIONS].begin() as session:
        removed = await unsubscribe(session, data.endpoint)
    if not removed:
        raise ApiError(404, "no push subscription has this endpoint", field="endpoint")
    return web.Response(status=204)
