"""The OpenAPI 3.1 document of the app, built from its routes: each handler's `@operation`
note (`ecrm.api.spec`) gives its pydantic models, whose JSON Schemas pydantic generates, and
`ecrm.api.auth` gives the scope each route needs. Nothing here is a hand-kept copy of a model.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ecrm import __version__
from ecrm.api.auth import PUBLIC_ROUTES, required_scope
from ecrm.api.spec import Operation, operation_of

REF = "#/components/schemas/{model}"
_PARAMETER = re.compile(r"\{(\w+)\}")
STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
    400: "Malformed: a body that is not UTF-8 JSON, or a link that is not valid",
    401: "No valid API key", 403: "The key lacks the route's scope", 404: "Not found",
    409: "Conflicts with what is stored, or a retry still being handled",
    413: "The body or batch is too large", 415: "Not UTF-8 JSON",
    422: "A field is invalid: `field` (or `fields`) names it", 503: "Not ready",
}


class UndescribedRouteError(RuntimeError):
    """A route without `@operation`: describe it (a test walks every route)."""


def routes_of(app: web.Application) -> list[tuple[str, str, Operation]]:
    """(method, path, operation) for every route but HEAD, in the order the app added them."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        note = operation_of(route.handler)
        if note is None:
            raise UndescribedRouteError(f"{route.method} {resource.canonical} has no @operation")
        found.append((route.method, resource.canonical, note))
    return found


def build_openapi(app: web.Application) -> dict[str, Any]:
    routes = routes_of(app)
    schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, note in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, note, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ecrm", "version": __version__,
                 "description": "The eCRM engine's HTTP API. Keys: `ecrm apikey create NAME --scope ...`."},
        "paths": paths,
        "components": {"schemas": schemas["$defs"], "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}},
    }


def _schemas(routes: list[tuple[str, str, Operation]]) -> dict[str, Any]:
    """Every model's schema, by (model, mode) and under `$defs` (the components)."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for _, _, note in routes:
        if note.request is not None:
            wanted[(note.request, "validation")] = None
        for model in note.responses.values():
            if model is not None:
                wanted[(model, "serialization")] = None
    by_model, top = models_json_schema(list(wanted), ref_template=REF)
    return {"$defs": top.get("$defs", {}), "by_model": by_model}


def _operation(method: str, path: str, note: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    public = (method, path) in PUBLIC_ROUTES
    described: dict[str, Any] = {"summary": note.summary, "operationId": f"{method.lower()}{_words(path)}"}
    if public:
        described["security"] = []
    else:
        scope = required_scope(method, path)
        described["security"] = [{"bearer": []}, {"apiKey": []}]
        described["x-scope"] = scope.value
        described["description"] = f"Needs an API key with the `{scope}` scope."
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for name in _PARAMETER.findall(path)]
    parameters += [{"name": name, "in": "header", "required": False, "description": meaning,
                    "schema": TypeAdapter(kind).json_schema()} for name, (meaning, kind) in note.headers.items()]
    if parameters:
        described["parameters"] = parameters
    if note.request is not None:
        described["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas["by_model"][(note.request, "validation")]}}}
    described["responses"] = {str(status): _response(status, model, note, schemas)
                              for status, model in sorted(note.responses.items())}
    if not public:
        for status in (401, 403):
            described["responses"].setdefault(str(status), {"description": STATUS_TEXT[status]})
    return described


def _response(status: int, model: type[BaseModel] | None, note: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": STATUS_TEXT.get(status, str(status))}
    if status == 204:
        return answer
    if model is not None:
        answer["content"] = {"application/json": {"schema": schemas["by_model"][(model, "serialization")]}}
    elif status < 300 or note.content_type != "application/json":
        answer["content"] = {note.content_type: {"schema": {} if note.content_type != "application/json"
                                                 else {"type": "object"}}}
    return answer


def _words(path: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", path) if part)
