"""What an API key may do, by scope: `ingest` sends the shop's data in (profiles, events,
orders), `send` sends transactional messages, `admin` reads or erases a customer's data.

Which route needs which scope is the table `ecrm.api.auth.ROUTE_SCOPES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from ecrm.errors import EcrmError


class Scope(StrEnum):
    INGEST = "ingest"
    SEND = "send"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
DEFAULT_SCOPES = frozenset({Scope.INGEST})  # `ecrm apikey create` without --scope: least privilege


def scope_set(scopes: Iterable[Scope | str]) -> frozenset[Scope]:
    """The scopes named in `scopes`, or an `EcrmError` naming an unknown one or saying none was given."""
    found = set()
    for name in scopes:
        if name not in Scope.__members__.values():
            raise EcrmError(f"unknown API key scope {name!r}; the scopes are {', '.join(Scope)}")
        found.add(Scope(name))
    if not found:
        raise EcrmError(f"an API key needs at least one scope ({', '.join(Scope)})")
    return frozenset(found)


def describe(scopes: Iterable[Scope]) -> str:
    """`ingest, admin`-style text in the order the scopes are defined."""
    chosen = set(scopes)
    return ", ".join(scope for scope in Scope if scope in chosen)
