"""Reading request bodies: bytes within the size limit, UTF-8 JSON (400 when it isn't), a
document no deeper than `MAX_DEPTH` and free of lone surrogates (422 naming the field), then a
pydantic model (422 per field).

JSON is UTF-8 (RFC 8259 section 8.1): a `charset` other than UTF-8 is refused with 415. The
body's size is capped by the app's `client_max_size` (setting `api.max_body_bytes`): 413.

orjson parses a body in a fraction of `json.loads`' time, and refuses what the checks below
would (bytes that are not UTF-8, NaN, lone surrogates), so a body it reads only needs its depth
checked. What it refuses, or may read differently (a run of 19 digits: orjson makes an integer
past 64 bits a float), goes through `json.loads` and every check, for the same answer as before.
"""

from __future__ import annotations

import codecs
import json
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel

from ecrm.errors import ApiError
from ecrm.profiles.ingest import PLAIN_JSON

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32  # objects and arrays inside one another, counting the body itself
# for one pass of bytes.translate: digits become "0", "{" and "[" become "{", the rest a space
_SHAPE = bytes(48 if 48 <= b <= 57 else 123 if b in b"{[" else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19
_CONTAINERS = (dict, list)
_PLAIN = {PLAIN_JSON: True}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def read_json(request: web.Request, exact_numbers: bool = False, max_bytes: int | None = None) -> Any:
    """The body as JSON; with `exact_numbers`, numbers with a fraction or exponent come as
    Decimal rather than float (money: 12345678901234.5678 keeps every digit). `max_bytes`
    replaces the app's body limit (the batch routes take more)."""
    return parse_json(await _read_body(request, max_bytes), exact_numbers)[0]


async def read_document(request: web.Request, max_bytes: int | None = None) -> tuple[Any, dict[str, Any] | None]:
    """`read_json`, and the validation context the document allows: `PLAIN_JSON` when orjson
    read it and it holds no escaped NUL, so a JSON object field need not be serialized to check."""
    raw = await _read_body(request, max_bytes)
    document, parsed_by_orjson = parse_json(raw)
    return document, _PLAIN if parsed_by_orjson and b"\\u0000" not in raw else None


async def _read_body(request: web.Request, max_bytes: int | None) -> bytes:
    _check_charset(request.charset)
    try:
        return await (request.read() if max_bytes is None else _read_up_to(request, max_bytes))
    except web.HTTPRequestEntityTooLarge as exc:
        limit = max_bytes or request.client_max_size
        raise ApiError(413, f"the body is larger than the limit of {limit} bytes") from exc


def parse_json(raw: bytes, exact_numbers: bool = False) -> tuple[Any, bool]:
    """A body's bytes as a checked JSON document (see the module's docstring), and whether
    orjson read it."""
    shape = raw.translate(_SHAPE)
    if not exact_numbers and _LONG_NUMBER not in shape:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the slow path below finds the problem and words the answer
        else:
            if shape.count(b"{") >= MAX_DEPTH and _deeper_than_allowed(document):  # fewer brackets: not so deep
                check_document(document)  # names the field
            return document, True
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 (byte {exc.start} is invalid); send JSON as UTF-8") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=Decimal if exact_numbers else None)
    except RecursionError:
        raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    check_document(document)
    return document, False


async def _read_up_to(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


def _check_charset(charset: str | None) -> None:
    if charset is None:
        return
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = None
    if name != "utf-8":
        raise ApiError(415, f"charset {charset!r} is not accepted: send JSON as UTF-8 "
                            "(Content-Type: application/json or application/json; charset=utf-8)")


def check_document(document: Any) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or holding a lone surrogate (a `\\ud800`
    escape, which no database stores), naming the field. Walks with a stack, not recursion."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            raise ApiError(422, f"{_name(path[:1])} is nested deeper than {MAX_DEPTH} levels", field=_name(path[:1]))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, (*path, key))
            stack.append((item, (*path, str(key))))


def _deeper_than_allowed(document: Any) -> bool:
    """Whether objects and arrays nest deeper than MAX_DEPTH; a level at a time, no paths."""
    level = [document] if isinstance(document, _CONTAINERS) else []
    for _ in range(MAX_DEPTH):
        level = [child for value in level for child in (value.values() if isinstance(value, dict) else value)
                 if isinstance(child, _CONTAINERS)]
    return bool(level)


def _check_text(text: str, path: tuple[str, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        field = _name(path)
        raise ApiError(422, f"{field} holds a lone surrogate (an unpaired \\ud800-\\udfff escape); "
                            "send valid Unicode text", field=field) from None


def _name(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(body)"


async def read_model(request: web.Request, model: type[M], exact_numbers: bool = False) -> M:
    """The body as `model`; a pydantic ValidationError escapes for the error middleware."""
    if exact_numbers:
        return model.model_validate(await read_json(request, exact_numbers))
    document, context = await read_document(request)
    return model.model_validate(document, context=context)
