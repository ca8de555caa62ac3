"""`ecrm serve`: the API on uvloop, in this process or in N worker processes sharing one port.

With `--workers N` (N > 1) this process only supervises: it starts N `ecrm serve` processes
that each listen on the same host and port with SO_REUSEPORT, so the kernel spreads new
connections over them and the API uses every core. SIGTERM or Ctrl-C stops them all
gracefully (each finishes its requests in flight). If one worker dies, the others are stopped
and `serve` exits 1, for the service manager to restart the whole.

On PostgreSQL without Redis, one more child maps the shop webhooks the workers store, at a
lower CPU priority (`ecrm.shops.mapper`): the workers only store and acknowledge them. It is
supervised as the workers are; it maps what was stored while it was down when it starts again.

The workers share prometheus-client's multiprocess mode, so `/metrics` from any of them adds up
all of them: `PROMETHEUS_MULTIPROC_DIR` if set, else a temporary directory removed at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from ecrm import heap, loop
from ecrm.clock import SYSTEM_CLOCK
from ecrm.errors import EcrmError
from ecrm.metrics import MULTIPROC_ENV
from ecrm.settings import Settings

logger = logging.getLogger(__name__)
STOP_TIMEOUT = 75.0  # aiohttp gives requests in flight up to 60 s when stopping


def serve(settings: Settings, host: str, port: int, *, reuse_port: bool = False, quiet: bool = False,
          shop_mapper: bool = False) -> None:
    """Serve the API in this process, on uvloop, until SIGINT or SIGTERM; with `shop_mapper`, a
    mapper process maps the shop webhooks (`maps_apart`)."""
    from aiohttp import web

    from ecrm.api.app import create_app

    loop.use_fast_loop()
    app = create_app(settings, SYSTEM_CLOCK, shop_mapper=shop_mapper)
    app.on_startup.append(_settle_heap)  # last: after the database, the writers and the API document
    try:
        web.run_app(app, host=host, port=port, reuse_port=reuse_port or None, print=None if quiet else print)
    except OSError as exc:
        raise EcrmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


async def _settle_heap(_app: object) -> None:
    """What start-up loaded lives as long as the process; requests' objects die young
    (`ecrm.heap`: full collections otherwise rescan the whole start-up heap)."""
    heap.settle()


def maps_apart(settings: Settings) -> bool:
    """Whether `serve --workers N` (N > 1) maps shop webhooks in a mapper process of its own: on
    PostgreSQL (the workers wake it with NOTIFY) when no Redis (and `ecrm worker`) maps them."""
    return not settings.redis_url and settings.database_url.startswith("postgresql")


def run_mapper(settings: Settings) -> int:
    """Be the mapper process: map shop webhooks at the worker's CPU priority until SIGTERM/SIGINT."""
    from ecrm.shops.mapper import Mapper
    from ecrm.worker import yield_cores

    yield_cores(settings)
    with contextlib.suppress(KeyboardInterrupt):  # a transaction cut short rolled back: still `received`
        loop.run(Mapper(settings).run(), sigterm_as_sigint=True)
    return 0


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def supervise(worker_command: Sequence[str], workers: int, address: str,
              mapper_command: Sequence[str] | None = None) -> int:
    """Run `workers` copies of `worker_command`, and `mapper_command` if given, until SIGINT/SIGTERM
    (0) or one of them exits (1)."""
    with _metrics_dir() as env:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        children: dict[int, subprocess.Popen[bytes]] = {}
        result = 0
        try:
            for _ in range(workers):
                child = subprocess.Popen(worker_command, env=env)
                children[child.pid] = child
            pids = ", ".join(map(str, children))
            mapper = ""
            if mapper_command is not None:
                child = subprocess.Popen(mapper_command, env=env)
                children[child.pid] = child
                mapper = f" and a webhook mapper (pid {child.pid})"
            _say(sys.stdout, f"serving on http://{address} with {workers} workers (pids {pids}){mapper}; "
                             "SIGTERM or Ctrl-C stops them")
            pid, status = os.waitpid(-1, 0)
            children.pop(pid, None)
            _say(sys.stderr, f"error: worker {pid} exited ({_describe(status)}); stopping the others")
            result = 1
        except _Stop:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _stop_all(list(children.values()))
        return result


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    from ecrm.metrics import process_stopped

    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("worker %s did not stop within %.0f s; killing it", child.pid, STOP_TIMEOUT)
            child.kill()
            child.wait()
        process_stopped(child.pid)


@contextlib.contextmanager
def _metrics_dir() -> Iterator[dict[str, str]]:
    """The workers' environment, with a multiprocess metrics directory (a temporary one unless set)."""
    if os.environ.get(MULTIPROC_ENV):
        yield dict(os.environ)
        return
    path = tempfile.mkdtemp(prefix="ecrm-metrics-")
    os.environ[MULTIPROC_ENV] = path  # this process's own metrics calls then read the same files
    try:
        yield dict(os.environ)
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(path, ignore_errors=True)


def worker_command(config: Path | None, verbose: bool, host: str, port: int, *,
                   mapped_apart: bool = False) -> list[str]:
    """The command line of one worker: this ecrm, the same settings, the shared port."""
    return [*_ecrm(config, verbose), "serve", "--host", host, "--port", str(port), "--worker",
            *(["--mapped-apart"] if mapped_apart else [])]


def mapper_command(config: Path | None, verbose: bool) -> list[str]:
    """The command line of the mapper process: this ecrm, the same settings."""
    return [*_ecrm(config, verbose), "serve", "--mapper"]


def _ecrm(config: Path | None, verbose: bool) -> list[str]:
    return [sys.executable, "-m", "ecrm", *(["--config", str(config)] if config else []), *(["-v"] if verbose else [])]
