"""`profiles.id` among the ids a query over events or orders returns, in the form each database
plans best.

SQLite: `profiles.id IN (query)`, which it reads once into a temporary index: right for a
whole segment, wrong for the thousand or one profiles a refresh evaluates (it would read every
`viewed` event of 30 days to keep one profile's). Built under `probing()`, the condition takes
the EXISTS form on SQLite too, which it evaluates per profile through the indexes on
`profile_id` (`refresh.apply_changes` does).

PostgreSQL: `EXISTS (SELECT 1 FROM (query) AS m WHERE m.profile_id = profiles.id)`. At the top
of the WHERE clause this becomes a semi join (or, under NOT, an anti join) that can spill to
disk; under OR the profile's id is pushed into the query, a probe of an index on profile_id.
`NOT (profiles.id IN (query))` is never turned into an anti join: once the ids outgrow
work_mem PostgreSQL scans the whole list for every profile (measured: a `not:` over 150,000
ids with work_mem 1 MB ran for more than 10 minutes on 200,000 profiles).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, exists
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from ecrm.profiles.models import Profile

_PROBING: ContextVar[bool] = ContextVar("segments_probing", default=False)


@contextmanager
def probing() -> Iterator[None]:
    """Conditions built inside are for a few given profiles, not a whole segment."""
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


class Member(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("listed", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("found", InternalTraversal.dp_clauseelement),
                           ("probe", InternalTraversal.dp_boolean)]

    def __init__(self, listed: ColumnElement[bool], found: ColumnElement[bool], probe: bool) -> None:
        self.listed, self.found, self.probe = listed, found, probe


@compiles(Member, "sqlite")
def _member_sqlite(element: Member, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.found if element.probe else element.listed, **kw)


@compiles(Member, "postgresql")
def _member_pg(element: Member, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.found, **kw)


def member(ids: Select[Any]) -> ColumnElement[bool]:
    """True when the profile's id is among `ids` (a query whose first column is a profile id,
    never NULL): never NULL itself."""
    rows = ids.subquery("members")
    return Member(Profile.id.in_(ids), exists().where(rows.c[0] == Profile.id), _PROBING.get())
