"""`ecrm serve --workers 2`: two processes answer on one port; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from ecrm.settings import Settings
from tests.api.test_app import _free_port
from tests.conftest import ROOT


async def _health_pid(client: aiohttp.ClientSession, port: int) -> int | None:
    try:
        async with client.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
            pid: int = (await resp.json())["pid"]
            return pid
    except aiohttp.ClientConnectionError:
        await asyncio.sleep(0.05)  # not listening yet
        return None


async def _requests_counted(client: aiohttp.ClientSession, port: int) -> float:
    async with client.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "ecrm_http_requests"
               for s in f.samples if s.name == "ecrm_http_requests_total" and s.labels["route"] == "/health")


def start_serving(settings: Settings, port: int, **environment: str) -> subprocess.Popen[bytes]:
    """`ecrm serve --workers 2` on `settings`' database, with these environment variables too."""
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": settings.database_url,
           "ECRM_SECRET_KEY": settings.secret_key, **environment}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "ecrm", "serve", "--port", str(port), "--workers", "2", "--dev"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def test_serve_with_two_workers_answers_from_two_processes_and_stops_on_sigterm(settings: Settings) -> None:
    port = _free_port()
    server = start_serving(settings, port)
    try:
        pids: list[int] = []
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection, so a new pick of worker, each time
        async with aiohttp.ClientSession(connector=connector) as client:
            for _ in range(400):
                if (pid := await _health_pid(client, port)) is not None:
                    pids.append(pid)
                if len(set(pids)) == 2:
                    break
            assert len(set(pids)) == 2, f"answers came from {set(pids)} only"
            assert await _requests_counted(client, port) == len(pids)  # both workers' counts, added up
        children = {p.pid for p in psutil.Process(server.pid).children() if "--mapper" not in p.cmdline()}
        assert set(pids) == children  # and on PostgreSQL a webhook mapper (tests/shops/test_mapper.py)
    finally:
        out = await stop_serving(server, pids)
    assert f"serving on http://127.0.0.1:{port} with 2 workers" in out


async def stop_serving(server: subprocess.Popen[bytes], pids: Iterable[int]) -> str:
    """SIGTERM to `serve`, which must exit 0 without a traceback, its processes `pids` gone; its output."""
    server.send_signal(signal.SIGTERM)
    out, err = await asyncio.to_thread(server.communicate, timeout=30)
    assert server.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    return out.decode()
