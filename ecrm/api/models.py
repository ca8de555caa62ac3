"""The api_keys table: keys are shown once at creation and stored only as a SHA-256 hash, with
the scopes they may use; a revoked key stays (for audit), refused. Names are unique among the
keys not revoked.

Times have no Python-side default: `ecrm.api.apikeys` sets them from its caller's clock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ecrm.api.scopes import Scope
from ecrm.db import Base, Id, UtcDateTime

NAME_MAX = 100
LIVE = text("revoked_at IS NULL")


class ScopeSet(TypeDecorator[frozenset[Scope]]):
    """A set of scopes, stored as their names in order, space-separated (`admin ingest`); a name
    this version does not know is left out when read."""

    impl = String(100)
    cache_ok = True

    def process_bind_param(self, value: frozenset[Scope] | None, dialect: Dialect) -> str | None:
        return None if value is None else " ".join(sorted(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> frozenset[Scope] | None:
        if value is None:
            return None
        names = value.split()
        return frozenset(scope for scope in Scope if scope.value in names)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("uq_api_keys_name_live", "name", unique=True, sqlite_where=LIVE, postgresql_where=LIVE),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[frozenset[Scope]] = mapped_column(ScopeSet)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
