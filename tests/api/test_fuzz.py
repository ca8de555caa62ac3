"""Arbitrary JSON, and arbitrary bytes, thrown at every JSON entry point: always an answer
below 500, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Client

# every code point, lone surrogates and NUL included, with the troublesome ones often
CHARACTERS = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\u0e01", "a", "b", "c"])
ANY_TEXT = st.lists(CHARACTERS, max_size=30).map("".join)  # st.text() leaves out lone surrogates
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
                    max_leaves=30)
OBJECTS = st.dictionaries(ANY_TEXT, JSON, max_size=4)
ID = st.sampled_from(["c-1", "c-2"]) | ANY_TEXT
TIMES = st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()) | st.sampled_from(
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00"])
CONSENT = st.dictionaries(st.sampled_from(["email", "sms"]), st.fixed_dictionaries(
    {"state": st.sampled_from(["granted", "withdrawn"])}, optional={"source": ANY_TEXT}))
# mostly valid but for the free text, so that most reach the database
PROFILES = st.fixed_dictionaries({"external_id": ID}, optional={
    "first_name": ANY_TEXT, "email": st.emails(), "traits": OBJECTS, "consent": CONSENT})
EVENTS = st.fixed_dictionaries({"external_id": ID, "name": st.just("order.placed")},
                               optional={"properties": OBJECTS, "occurred_at": TIMES})
AMOUNTS = st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.integers() | st.floats() | ANY_TEXT
ITEMS = st.lists(st.fixed_dictionaries({"name": ANY_TEXT, "quantity": st.integers(), "unit_price": AMOUNTS},
                                       optional={"sku": ANY_TEXT}), max_size=3)
ORDERS = st.fixed_dictionaries(
    {"order_id": ID, "external_id": ID, "status": st.sampled_from(["placed", "paid", "shipped"]),
     "total": AMOUNTS, "currency": st.sampled_from(["THB", "IRR", "JPY", "KWD", "EUR", "xx"]) | ANY_TEXT},
    optional={"placed_at": TIMES, "line_items": ITEMS})
PATHS = st.sampled_from(["/v1/profiles", "/v1/events", "/v1/orders"])
REQUESTS = st.one_of(st.tuples(st.just("/v1/profiles"), PROFILES), st.tuples(st.just("/v1/events"), EVENTS),
                     st.tuples(st.just("/v1/orders"), ORDERS), st.tuples(PATHS, JSON))
RUN = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _status(api: Client, path: str, body: bytes, auth: dict[str, str]) -> int:
    resp = await api.post(path, data=io.BytesIO(body), headers={**auth, "Content-Type": "application/json"})
    assert resp.content_type == "application/json"
    return resp.status


@RUN
@given(request=REQUESTS, allow_nan=st.booleans())
async def test_any_json_document_gets_an_answer_below_500(api: Client, auth: dict[str, str],
                                                         request: tuple[str, Any], allow_nan: bool) -> None:
    path, document = request
    try:
        body = json.dumps(document, allow_nan=allow_nan).encode()
    except ValueError:
        assume(False)  # NaN or Infinity without allow_nan
        return
    assert await _status(api, path, body, auth) < 500


@RUN
@given(path=PATHS, body=st.binary(max_size=200))
async def test_any_bytes_get_an_answer_below_500(api: Client, auth: dict[str, str], path: str, body: bytes) -> None:
    assert await _status(api, path, body, auth) < 500
