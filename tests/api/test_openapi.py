"""/openapi.json and /docs: every route described, from the handlers' own models."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from ecrm.api.app import create_app
from ecrm.api.openapi import routes_of
from ecrm.api.spec import operation_of
from ecrm.profiles.ingest import ProfileIn
from ecrm.settings import Settings
from tests.api.conftest import Client


def test_every_route_of_the_app_is_described(settings: Settings) -> None:
    app = create_app(settings)
    described = {(method, path) for method, path, _ in routes_of(app)}
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    assert described == routes
    assert all(operation_of(r.handler) is not None for r in app.router.routes() if r.method != "HEAD")


async def test_the_document_uses_the_models_schemas_and_names_scopes(api: Client) -> None:
    resp = await api.get("/openapi.json")  # public: no key
    assert resp.status == 200
    spec = await resp.json()
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["schemas"]["ProfileIn"] == _component(ProfileIn, spec)
    assert spec["paths"]["/v1/profiles"]["post"]["x-scope"] == "ingest"
    assert spec["paths"]["/v1/messages"]["post"]["x-scope"] == "send"
    assert spec["paths"]["/v1/profiles/{external_id}"]["delete"]["x-scope"] == "admin"
    assert spec["paths"]["/health"]["get"]["security"] == []
    batch = spec["components"]["schemas"]["EventBatchIn"]["properties"]["items"]
    assert (batch["maxItems"], batch["items"]) == (1000, {"$ref": "#/components/schemas/EventIn"})
    cart = spec["components"]["schemas"]
    assert "CartIn" not in cart  # a cart is validated inside an event's properties, not a body of its own
    assert "Idempotency-Key" in [p["name"] for p in spec["paths"]["/v1/messages"]["post"]["parameters"]]


def _component(model: type[BaseModel], spec: dict[str, object]) -> object:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


async def test_docs_is_a_plain_html_page_with_every_route_and_no_script(api: Client) -> None:
    resp = await api.get("/docs")
    assert (resp.status, resp.content_type) == (200, "text/html")
    page = await resp.text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for needle in ("<code>/v1/events:batch</code>", "<code>/v1/messages</code>", "Idempotency-Key",
                   "<code>external_id</code> (required)", "Scope: <code>send</code>"):
        assert needle in page


def test_a_route_without_a_description_is_refused(settings: Settings) -> None:
    app = create_app(settings)

    async def bare(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/bare", bare)
    try:
        routes_of(app)
    except RuntimeError as exc:
        assert "GET /bare" in str(exc)
    else:
        raise AssertionError("an undescribed route went unnoticed")
