"""Schemathesis against /openapi.json: examples generated from the document (valid and invalid)
for every operation, sent to the running app with a key of every scope. No answer is a 5xx,
and every 4xx names the problem (a JSON `error` sentence; the unsubscribe page's HTML says it).
Bounded: a few examples per operation, a few seconds per database."""

from __future__ import annotations

import asyncio
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pytest_aiohttp import AiohttpServer
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.settings import Settings

EXAMPLES = 8
RUN = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
               phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _problems(method: str, path: str, response: requests.Response) -> list[str]:
    where = f"{method} {path} -> {response.status_code}"
    if response.status_code >= 500:
        return [f"{where}: {response.text[:300]}"]
    if response.status_code < 400:
        return []
    if response.headers.get("Content-Type", "").startswith("application/json"):
        error = response.json().get("error") if isinstance(response.json(), dict) else None
        return [] if isinstance(error, str) and error.strip() else [f"{where} without an `error` sentence"]
    return [] if response.text.strip() else [f"{where} with an empty body"]


def fuzz(document: dict[str, Any], base_url: str, auth: dict[str, str]) -> list[str]:
    """Run every operation's examples; the problems found (blocking: run it in a thread)."""
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document is not valid OpenAPI
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @RUN
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=base_url, session=session, headers=dict(auth), timeout=10)
                problems.extend(_problems(case.method.upper(), case.path, response))

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no body, no parameter): only valid examples
                assert mode is GenerationMode.NEGATIVE, operation.path
    return problems


async def test_no_generated_request_gets_a_5xx_and_every_4xx_names_the_problem(
        aiohttp_server: AiohttpServer, settings: Settings, clock: FrozenClock, auth: dict[str, str]) -> None:
    server = await aiohttp_server(create_app(settings, clock))
    base_url = str(server.make_url(""))
    document = requests_free_document(await _get_json(server.make_url("/openapi.json")))
    problems = await asyncio.to_thread(fuzz, document, base_url, auth)
    assert problems == []


async def _get_json(url: Any) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(str(url), timeout=10).json()
        return answer

    return await asyncio.to_thread(get)


def requests_free_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document as served, less the metrics route: its text is Prometheus', not JSON."""
    return {**document, "paths": {p: ops for p, ops in document["paths"].items() if p != "/metrics"}}
