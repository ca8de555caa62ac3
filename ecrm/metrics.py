"""Prometheus metrics (prometheus-client), served by the API at `GET /metrics`.

- `ecrm_http_requests_total{route,method,status}`: requests the API answered; `route` is the
  route's pattern (`/v1/profiles/{external_id}`), `unmatched` for unknown paths.
- `ecrm_sends_total{channel,outcome}`: messages whose outcome a send recorded; `outcome` is the
  delivery status written (sent, failed, unknown, or queued: to be retried).
- `ecrm_send_chunk_seconds{channel}`: time to hand one chunk of a batch (up to 200 messages)
  to its channel, so the send latency of a message is at most one chunk's.
- `ecrm_queue_jobs`: jobs waiting in the Redis queue, read when /metrics is scraped.

Each process counts its own. With `PROMETHEUS_MULTIPROC_DIR` set (before this module is first
imported) to a directory shared by every process, prometheus-client's multiprocess mode adds
them up: `ecrm serve --workers N` sets one for its workers when it is unset; set it yourself to
the same empty directory for `ecrm serve` and `ecrm worker` to see the workers' sends too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("ecrm_http_requests", "HTTP requests answered by the API", ["route", "method", "status"])
SENDS = Counter("ecrm_sends", "Messages whose send outcome was recorded", ["channel", "outcome"])
SEND_CHUNK_SECONDS = Histogram("ecrm_send_chunk_seconds", "Time to hand one chunk of messages to a channel",
                               ["channel"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
QUEUE_JOBS = Gauge("ecrm_queue_jobs", "Jobs waiting in the Redis queue when last read",
                   multiprocess_mode="mostrecent")


def count_sends(channel: str, outcomes: Iterable[tuple[str, int]]) -> None:
    """One increment per outcome of a chunk (pairs of outcome and count), not per message."""
    for outcome, n in outcomes:
        if n:
            SENDS.labels(channel, outcome).inc(n)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type; every process's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_stopped(pid: int) -> None:
    """Forget a stopped process's live gauges (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
