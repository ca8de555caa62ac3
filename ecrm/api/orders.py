"""`/v1/orders`: upsert an order by the shop's order id (201 when created, 200 when updated), read one back.

Amounts travel as strings ("19.99") so they stay exact; numbers are accepted too, read as
decimals. An order posted under another profile than its own is refused with 409 naming
`external_id` (see `ecrm.orders.ingest`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, SESSIONS, TOUCHES
from ecrm.api.path_ids import could_be_stored
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.orders import money
from ecrm.orders.ingest import OrderIn, OrderOwnerConflict, find_order, upsert_order
from ecrm.orders.models import Order

routes = web.RouteTableDef()
MAX_ORDER_ID = 200  # as ingest's OrderId


def order_json(order: Order, external_id: str) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "external_id": external_id,
        "status": order.status,
        "total": money.format_amount(money.from_stored(order.total_e4), order.currency),
        "currency": order.currency,
        "placed_at": order.placed_at.isoformat(),
        "line_items": order.line_items,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


@routes.post("/v1/orders")
@operation("Create or update an order by the shop's order_id", OrderIn,
           {200: None, 201: None, 400: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_order(request: web.Request) -> web.Response:
    data = await read_model(request, OrderIn, exact_numbers=True)
    try:
        async with request.app[SESSIONS].begin() as session:
            order, created = await upsert_order(session, data, request.app[CLOCK].now())
    except OrderOwnerConflict as exc:
        raise ApiError(409, str(exc), field="external_id") from None
    request.app[TOUCHES].touch(order.profile_id)  # committed: its segments may have changed
    body = order_json(order, data.external_id)
    if not created:
        return web.json_response(body)
    return web.json_response(body, status=201, headers={"Location": f"/v1/orders/{quote(order.order_id, safe='')}"})


@routes.get("/v1/orders/{order_id}")
@operation("Read an order", responses={200: None, 404: ErrorOut})
async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    async with request.app[SESSIONS]() as session:
        found = await find_order(session, order_id) if could_be_stored(order_id, MAX_ORDER_ID) else None
    if found is None:
        raise ApiError(404, f"no order has order_id {order_id!r}", field="order_id")
    return web.json_response(order_json(*found))

