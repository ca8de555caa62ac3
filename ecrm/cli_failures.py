"""What the command line prints for a failure it expects: an ecrm error (a refused YAML file:
a line per problem), or a database, Redis or file it cannot reach or use. One line, with no
SQL, parameters, key hashes or traceback; `--debug` (or ECRM_DEBUG=1) shows those. Anything
else is a bug and keeps its traceback."""

from __future__ import annotations

import re
import socket

from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ecrm.errors import EcrmError, SpecError
from ecrm.settings import Settings

_WRAPPER = re.compile(r"^\((?:[\w.]+)\) ")  # SQLAlchemy's "(sqlite3.OperationalError) " prefix


def explain(exc: BaseException, settings: Settings | None) -> list[str] | None:
    """The lines to print for `exc`, or None when it is not an expected failure."""
    if isinstance(exc, SpecError):
        return [f"refused: {len(exc.problems)} problem(s)", *(f"  {problem}" for problem in exc.problems)]
    if isinstance(exc, EcrmError):
        return [f"error: {line}" for line in str(exc).splitlines()]
    line = _one_line(exc, settings)
    return None if line is None else [f"error: {line}"]


def _one_line(exc: BaseException, settings: Settings | None) -> str | None:
    if isinstance(exc, SQLAlchemyError):
        return f"database {_database(settings)}: {_first_line(exc)}"
    if isinstance(exc, RedisError):
        redis_url = settings.redis_url if settings is not None else None
        return f"redis {_hide_password(redis_url or '')}: {_first_line(exc)}"
    if isinstance(exc, ConnectionError | socket.gaierror | TimeoutError):
        return (f"cannot connect: {exc or type(exc).__name__}; is the server up and its address right? "
                f"(database_url {_database(settings)})")
    if isinstance(exc, OSError):
        return str(exc) or type(exc).__name__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    line = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    return _WRAPPER.sub("", line.strip())


def _database(settings: Settings | None) -> str:
    return _hide_password(settings.database_url) if settings is not None else "(settings not loaded)"


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable URL)"
