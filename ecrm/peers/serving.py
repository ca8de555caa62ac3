"""How a peer runs as its own process, ``python -m ecrm.peers.<peer> --port 0 --stats-file F``, as
the benchmarks start them (``bench.peers``): it prints ``<name> listening on HOST:PORT`` once
bound; SIGUSR1 writes its tally to F and SIGTERM or SIGINT stop it, the tally written once more
after it closed (without F, its summary goes to stdout as one JSON line); SIGUSR2 starts its
counts afresh, for a peer that can."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol


class Peer(Protocol):
    async def close(self) -> None: ...

    def stats(self) -> Mapping[str, object]:
        """The summary counts."""

    def tally(self) -> dict[str, Any]:
        """The summary and what a client checks its run against (counts per recipient or endpoint...)."""


def write_json(document: Mapping[str, Any], path: Path) -> None:
    """Through a temporary file beside `path`, so that a reader sees the old document or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, path)


def report(peer: Peer, stats_file: Path | None) -> None:
    if stats_file is not None:
        write_json(peer.tally(), stats_file)
    else:
        sys.stdout.write(json.dumps(peer.stats()) + "\n")
        sys.stdout.flush()


async def serve_until_stopped(peer: Peer, name: str, host: str, port: int, stats_file: Path | None,
                              reset: Callable[[], None] | None = None) -> None:
    """Announce the started `peer`, answer the signals until SIGTERM or SIGINT, then close it and report."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report, peer, stats_file)
    if reset is not None:
        loop.add_signal_handler(signal.SIGUSR2, reset)
    sys.stdout.write(f"{name} listening on {host}:{port}\n")
    sys.stdout.flush()
    await stop.wait()
    await peer.close()
    report(peer, stats_file)
