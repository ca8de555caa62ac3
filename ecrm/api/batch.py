"""Batch endpoints for shops: `POST /v1/profiles:batch`, `/v1/events:batch`, `/v1/orders:batch`.

The body is `{"items": [...]}` with at most `MAX_ITEMS` items (more: 413) in at most
`api.max_batch_bytes` (16 MiB; 413 beyond) rather than the single routes' limit. Each item is
validated on its own by the single route's model; the valid ones are stored together in one
transaction and a few statements (`profiles.ingest.upsert_profile_batch`, `profiles.bulk` through
the app's writers, `orders.bulk`), and the answer (200) lists every refused item by index and
field. A retried batch stores nothing twice: profiles and orders upsert by their ids, events by their client `id`.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ecrm.api.body import read_document, read_json
from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS, WRITERS
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.orders.bulk import OWNER_CONFLICT, upsert_orders
from ecrm.orders.ingest import OrderIn
from ecrm.profiles.ingest import EventIn, ProfileIn, input_errors, upsert_profile_batch

routes = web.RouteTableDef()
MAX_ITEMS = 1000
M = TypeVar("M", bound=BaseModel)


class ItemError(BaseModel):
    index: int
    field: str
    message: str


class BatchOut(BaseModel):
    """What a batch did: items received and stored, and why each refused item was refused."""

    received: int
    stored: int = Field(description="items written, or already stored as sent (a retry)")
    created: int = 0
    updated: int = 0
    duplicates: int = Field(0, description="events whose client id their profile already had: not stored again")
    errors: list[ItemError] = Field(default_factory=list)


class ProfileBatchIn(BaseModel):
    items: list[ProfileIn] = Field(max_length=MAX_ITEMS)


class EventBatchIn(BaseModel):
    items: list[EventIn] = Field(max_length=MAX_ITEMS)


class OrderBatchIn(BaseModel):
    items: list[OrderIn] = Field(max_length=MAX_ITEMS)


_ANSWERS: dict[int, type[BaseModel] | None] = {200: BatchOut, 400: ErrorOut, 413: ErrorOut, 422: ErrorOut}


async def _items(request: web.Request, exact_numbers: bool = False) -> tuple[list[Any], dict[str, Any] | None]:
    """The items, and the validation context their document allows (`body.read_document`)."""
    limit = request.app[SETTINGS].api.max_batch_bytes
    if exact_numbers:
        document, context = await read_json(request, exact_numbers, limit), None
    else:
        document, context = await read_document(request, limit)
    if not isinstance(document, dict) or set(document) != {"items"} or not isinstance(document["items"], list):
        raise ApiError(422, 'the body must be {"items": [...]}, a list of the items', field="items")
    items: list[Any] = document["items"]
    if len(items) > MAX_ITEMS:
        raise ApiError(413, f"the batch has {len(items)} items, more than {MAX_ITEMS}; split it", field="items")
    return items, context


def _validate(items: list[Any], model: type[M], context: dict[str, Any] | None = None
              ) -> tuple[list[tuple[int, M]], list[ItemError]]:
    """The valid items with their indexes, and every problem of the others. The usual batch,
    all valid, is one call into pydantic-core for the whole list (a third less per item than a
    call per item); a batch with an invalid item is then validated item by item."""
    try:
        return list(enumerate(_list_adapter(model).validate_python(items, context=context))), []
    except ValidationError:
        pass
    valid, errors = [], []
    for index, item in enumerate(items):
        try:
            valid.append((index, model.model_validate(item, context=context)))
        except ValidationError as exc:
            errors += [ItemError(index=index, field=e.field or "(item)", message=e.message) for e in input_errors(exc)]
    return valid, errors


@functools.cache
def _list_adapter(model: type[M]) -> TypeAdapter[list[M]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _answer(out: BatchOut) -> web.Response:
    out.errors.sort(key=lambda error: error.index)
    return web.json_response(out.model_dump(mode="json"))


@routes.post("/v1/profiles:batch")
@operation("Upsert up to 1,000 profiles by external_id", ProfileBatchIn, _ANSWERS)
async def post_profiles(request: web.Request) -> web.Response:
    items, context = await _items(request)
    valid, errors = _validate(items, ProfileIn, context)
    limit = request.app[SETTINGS].api.max_traits_bytes
    async with request.app[SESSIONS].begin() as session:
        counts = await upsert_profile_batch(session, [row for _, row in valid], request.app[CLOCK].now(), limit)
    oversized = set(counts.oversized)
    errors += [ItemError(index=index, field="traits", message=f"traits would pass the limit of {limit} bytes "
                         "(api.max_traits_bytes) with this update; the profile was left as it was")
               for index, row in valid if row.external_id in oversized]
    stored = sum(row.external_id not in oversized for _, row in valid)
    return _answer(BatchOut(received=len(items), stored=stored, created=counts.created, updated=counts.updated,
                            errors=errors))


@routes.post("/v1/events:batch")
@operation("Record up to 1,000 events; an event's client id is stored once per profile", EventBatchIn, _ANSWERS)
async def post_events(request: web.Request) -> web.Response:
    items, context = await _items(request)
    valid, errors = _validate(items, EventIn, context)
    counts = await request.app[WRITERS].batch_events([event for _, event in valid], request.app[CLOCK].now())
    return _answer(BatchOut(received=len(items), stored=len(valid), created=counts.stored,
                            duplicates=counts.duplicates, errors=errors))


@routes.post("/v1/orders:batch")
@operation("Upsert up to 1,000 orders by the shop's order_id", OrderBatchIn, _ANSWERS)
async def post_orders(request: web.Request) -> web.Response:
    items, _ = await _items(request, exact_numbers=True)
    valid, errors = _validate(items, OrderIn)
    async with request.app[SESSIONS].begin() as session:
        results = await upsert_orders(session, [order for _, order in valid], request.app[CLOCK].now())
    errors += [ItemError(index=valid[i][0], field="external_id", message=OWNER_CONFLICT) for i in results.conflicts]
    return _answer(BatchOut(received=len(items), stored=len(valid) - len(results.conflicts),
                            created=results.created, updated=results.updated, errors=errors))

