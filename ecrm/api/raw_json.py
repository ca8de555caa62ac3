"""A raw body (kept as bytes for a signature, or bounded by hand) read as a UTF-8 JSON object:
400 for bytes that are not UTF-8 or not JSON (NaN and Infinity included), 415 for another
charset, 422 for a document that is not an object, too deep, or holding a lone surrogate.

`json_object_text` is for a body stored as text and read later (a shop's webhook): orjson
checks it first (a few times faster, and it refuses what the standard library is told to refuse
here: NaN, Infinity, bytes that are not UTF-8); what orjson refuses, the standard library reads
again, to accept what orjson alone refuses (a number beyond a double) and to name the problem as
it always did. Its document is only checked, never used: orjson reads an integer beyond 64 bits
as a float, which `json_object`, whose document is used, must not."""

from __future__ import annotations

import codecs
import json
from typing import Any

import orjson

from ecrm.api.body import MAX_DEPTH, check_document
from ecrm.errors import ApiError


def json_object(raw: bytes, charset: str | None) -> tuple[str, dict[str, Any]]:
    """The body's text and its document, once both are known to be storable."""
    return _read(raw, charset, fast=False)


def json_object_text(raw: bytes, charset: str | None) -> str:
    """The body's text, once it is known to be a storable JSON object (as `json_object` knows it)."""
    return _read(raw, charset, fast=True)[0]


def _read(raw: bytes, charset: str | None, fast: bool) -> tuple[str, dict[str, Any]]:
    if charset is not None and _codec(charset) != "utf-8":
        raise ApiError(415, f"charset {charset!r} is not accepted: send UTF-8 JSON")
    try:
        text = raw.decode("utf-8")
        document = _fast(raw) if fast else None
        if document is None:
            document = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 (byte {exc.start} is invalid)") from None
    except RecursionError:
        raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(422, "the body must be a JSON object")
    if b"\\u" in raw or not _depth_within(document):  # else nothing for the full walk to find
        check_document(document)
    return text, document


def _fast(raw: bytes) -> dict[str, Any] | None:
    """The body's object by orjson, or None when orjson refuses it or it is not an object."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _depth_within(document: dict[str, Any]) -> bool:
    """Whether no object or array lies deeper than MAX_DEPTH: a walk over containers alone, level
    by level. (A lone surrogate needs a `\\u` escape in the raw UTF-8, so a body without one
    holds none, and `check_document`, which names the field, runs only when it may find one.)"""
    level: list[Any] = [document]
    for _ in range(MAX_DEPTH):
        level = [item for value in level for item in (value.values() if isinstance(value, dict) else value)
                 if isinstance(item, dict | list)]
        if not level:
            return True
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None
