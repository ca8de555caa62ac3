"""aiohttp logs a malformed HTTP request (a request line or header over its limits, bad
framing) at ERROR with a traceback; it is the client's mistake, answered 400, so it becomes one
INFO line here. Other errors of aiohttp's server keep their level."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


def _client_mistake(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = f"{record.msg}: %s"
        record.args = (*(record.args if isinstance(record.args, tuple) else ()), str(exc).splitlines()[0])
        record.exc_info = record.exc_text = None
    return True


def quiet_malformed_requests() -> None:
    """Install the filter (once, however often it is called)."""
    logging.getLogger(SERVER_LOGGER).addFilter(_client_mistake)
