"""API-key authentication for every route except the health check, metrics, unsubscribe links,
the signed webhooks (Twilio, shops), the browser's push routes and the site script, and the scope each route needs.

The key comes as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; missing, unknown or
revoked keys get 401 with a JSON `error`. A live key without the route's scope gets 403 naming
the scope. Every route is either in PUBLIC_ROUTES or in ROUTE_SCOPES (a test walks the app's
routes); a route missing from both would need `admin`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ecrm.api.keys import API_KEYS
from ecrm.api.models import ApiKey
from ecrm.api.scopes import Scope, describe

PUBLIC_ROUTES = frozenset({("GET", "/health"), ("HEAD", "/health"), ("GET", "/metrics"), ("HEAD", "/metrics"),
                           ("GET", "/u/{token}"), ("HEAD", "/u/{token}"), ("POST", "/u/{token}"),
                           # the browser's side of web push (api.push_public): a subscribe token, not a key
                           *((method, path) for path in ("/push/sw.js", "/push/subscribe.js")
                             for method in ("GET", "HEAD")),
                           *((method, path) for path in ("/push/subscriptions", "/push/unsubscribe",
                                                         "/push/clicks/{token}") for method in ("POST", "OPTIONS")),
                           ("GET", "/openapi.json"), ("HEAD", "/openapi.json"), ("GET", "/docs"), ("HEAD", "/docs"),
                           # Twilio's webhooks: signed with the auth token instead (api.twilio_webhooks)
                           ("POST", "/webhooks/twilio/status"), ("POST", "/webhooks/twilio/inbound"),
                           ("POST", "/webhooks/{provider}"),  # signed by the shop instead
                           ("GET", "/t.js"), ("HEAD", "/t.js"), ("POST", "/t/collect")})  # the site script

# (method, route) -> the scope a key needs; HEAD goes as GET
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/v1/profiles"): Scope.INGEST,
    ("POST", "/v1/events"): Scope.INGEST,
    ("POST", "/v1/orders"): Scope.INGEST,
    ("POST", "/v1/profiles:batch"): Scope.INGEST,
    ("POST", "/v1/events:batch"): Scope.INGEST,
    ("POST", "/v1/orders:batch"): Scope.INGEST,
    ("POST", "/v1/push/subscriptions"): Scope.INGEST,
    ("DELETE", "/v1/push/subscriptions"): Scope.INGEST,  # a browser unsubscribing, told by the shop
    ("POST", "/v1/push/tokens"): Scope.INGEST,  # a subscribe token for a logged-in customer (api.push_public)
("POST", "/v1/messages"): Scope.SEND,
    ("GET", "/v1/profiles/{external_id}"): Scope.ADMIN,
    ("DELETE", "/v1/profiles/{external_id}"): Scope.ADMIN,
    ("GET", "/v1/orders/{order_id}"): Scope.ADMIN,
}
UNLISTED_SCOPE = Scope.ADMIN


def _is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in PUBLIC_ROUTES


def required_scope(method: str, route: str) -> Scope:
    return ROUTE_SCOPES.get(("GET" if method == "HEAD" else method, route), UNLISTED_SCOPE)


def _needed_scope(request: web.Request) -> Scope | None:
    """The scope the request's route needs; None when no route matched (a 404 or 405 follows)."""
    resource = request.match_info.route.resource
    return None if resource is None else required_scope(request.method, resource.canonical)


def presented_key(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-Api-Key", "").strip() or None


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": 'Bearer realm="ecrm"'})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    key = presented_key(request)
    if key is None:
        return _unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
    found = await request.app[API_KEYS].check(key)
    if found is None:
        return _unauthorized("the API key is not valid (unknown, mistyped or revoked)")
    needed = _needed_scope(request)
    if needed is not None and needed not in found.scopes:
        return _forbidden(request, needed, found)
    return await handler(request)


def _forbidden(request: web.Request, needed: Scope, key: ApiKey) -> web.Response:
    message = (f"the API key '{key.name}' may not {request.method} this route: it needs the '{needed}' scope "
               f"(the key has: {describe(key.scopes) or 'none'}); use a key created with `--scope {needed}`")
    return web.json_response({"error": message, "scope": needed.value}, status=403)
