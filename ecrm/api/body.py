"""Reading request bodies: JSON first (400 when it isn't), then a pydantic model (422 per field)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ecrm.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def read_json(request: web.Request) -> Any:
    text = await request.text()
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    """The body as `model`; a pydantic ValidationError escapes for the error middleware."""
    return model.model_validate(await read_json(request))
