"""The application shell: JSON errors for unknown routes and methods, and `ecrm serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import aiohttp

from ecrm.settings import Settings
from tests.api.conftest import Client
from tests.conftest import ROOT


async def test_an_unknown_route_with_a_key_answers_404_in_json(api: Client, auth: dict[str, str]) -> None:
    resp = await api.get("/v1/nothing-here", headers=auth)
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found"}


async def test_a_wrong_method_answers_405_in_json_with_the_allowed_ones(api: Client, auth: dict[str, str]) -> None:
    resp = await api.delete("/v1/profiles", headers=auth)
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert (await resp.json())["error"] == "Method Not Allowed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": settings.database_url,
           "ECRM_SECRET_KEY": "k" * 32, "ECRM_PUBLIC_URL": "https://shop.example"}  # what preflight asks on PostgreSQL
    return subprocess.Popen([sys.executable, "-m", "ecrm", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_ecrm_serve_answers_on_its_port_until_stopped(settings: Settings) -> None:
    port = _free_port()
    server = start_server(settings, port)
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(100):
                try:
                    async with client.get(f"http://127.0.0.1:{port}/health") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the server never answered")
    finally:
        server.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(server.wait, 20) == 0
