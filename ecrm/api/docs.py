"""`GET /openapi.json` (the app's OpenAPI document, `ecrm.api.openapi`) and `GET /docs`, the same
document as a plain HTML page: rendered here, no JavaScript and nothing fetched from elsewhere,
so it reads the same offline, in a terminal browser, or behind a strict firewall.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from aiohttp import web

from ecrm.api.openapi import build_openapi
from ecrm.api.spec import operation

routes = web.RouteTableDef()
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
         "h2{font-size:1.05rem;margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}"
         "code,.m{font-family:ui-monospace,monospace}.m{font-weight:bold}"
         "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2rem .5rem;"
         "border-bottom:1px solid #eee;vertical-align:top}")


async def build_document(app: web.Application) -> None:
    """At start-up (`on_startup`), when every route is in place; then kept."""
    app[OPENAPI] = build_openapi(app)


def document(app: web.Application) -> dict[str, Any]:
    return app[OPENAPI]


@routes.get("/openapi.json")
@operation("This API's OpenAPI 3.1 document", responses={200: None})
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


@routes.get("/docs")
@operation("This API's reference as an HTML page", responses={200: None}, content_type="text/html")
async def get_docs(request: web.Request) -> web.Response:
    return web.Response(text=render_docs(document(request.app)), content_type="text/html")


def render_docs(spec: dict[str, Any]) -> str:
    schemas = spec["components"]["schemas"]
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(spec['info']['title'])} API</title>"
             f"<style>{STYLE}</style><h1>{escape(spec['info']['title'])} API {escape(spec['info']['version'])}</h1>"
             f"<p>{escape(spec['info']['description'])} The machine-readable form is "
             "<a href=/openapi.json>/openapi.json</a>.</p>"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(_operation_html(method, path, op, schemas))
    return "".join(parts) + "</html>\n"


def _operation_html(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> str:
    out = [f"<h2><span class=m>{method.upper()}</span> <code>{escape(path)}</code></h2><p>{escape(op['summary'])}"]
    out.append(f" Scope: <code>{escape(op['x-scope'])}</code>.</p>" if "x-scope" in op else " Public.</p>")
    for parameter in op.get("parameters", []):
        out.append(f"<p>{escape(parameter['in'])} <code>{escape(parameter['name'])}</code>"
                   f"{': ' + escape(parameter['description']) if 'description' in parameter else ''}</p>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body is not None:
        out.append("<p>Body:</p>" + _fields_html(_resolve(body, schemas), schemas))
    answers = ", ".join(f"{escape(status)} {escape(answer['description'])}"
                        for status, answer in op["responses"].items())
    out.append(f"<p>Answers: {answers}.</p>")
    return "".join(out)


def _fields_html(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> str:
    properties = schema.get("properties", {})
    if not properties or depth > 3:
        return f"<p><code>{escape(_kind(schema, schemas))}</code></p>"
    required = set(schema.get("required", []))
    rows = []
    for name, field in properties.items():
        resolved = _resolve(field, schemas)
        nested = _fields_html(_resolve(resolved["items"], schemas), schemas, depth + 1) \
            if resolved.get("type") == "array" and "$ref" in resolved.get("items", {}) else ""
        if "properties" in resolved:
            nested = _fields_html(resolved, schemas, depth + 1)
        note = resolved.get("description") or field.get("description") or ""
        rows.append(f"<tr><td><code>{escape(name)}</code>{' (required)' if name in required else ''}</td>"
                    f"<td><code>{escape(_kind(field, schemas))}</code> {escape(note)}{nested}</td></tr>")
    return "<table><tr><th>field</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[1]] if isinstance(ref, str) else schema


def _kind(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A short type text: `string (email)`, `ProfileIn`, `array of LineItemIn`, `string | null`."""
    if "$ref" in schema:
        target = _resolve(schema, schemas)
        return _kind(target, schemas) if "enum" in target else str(schema["$ref"].rsplit("/", 1)[1])
    if "anyOf" in schema:
        return " | ".join(_kind(option, schemas) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_kind(schema.get('items', {}), schemas)}"
    notes = [str(schema[key]) for key in ("format", "pattern") if key in schema]
    notes += [f"{words} {schema[key]}" for key, words in (("minLength", "at least"), ("maxLength", "at most"),
                                                           ("maxItems", "at most")) if key in schema]
    return f"{kind} ({', '.join(notes)})" if notes else kind
