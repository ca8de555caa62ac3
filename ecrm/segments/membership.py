"""`profiles.id` among the ids a query over events or orders returns, in the form each database
plans best.

SQLite: `profiles.id IN (query)`, which it reads once into a temporary index.

PostgreSQL: `EXISTS (SELECT 1 FROM (query) AS m WHERE m.profile_id = profiles.id)`. At the top
of the WHERE clause this becomes a semi join (or, under NOT, an anti join) that can spill to
disk; under OR the profile's id is pushed into the query, a probe of an index on profile_id.
`NOT (profiles.id IN (query))` is never turned into an anti join: once the ids outgrow
work_mem PostgreSQL scans the whole list for every profile (measured: a `not:` over 150,000
ids with work_mem 1 MB ran for more than 10 minutes on 200,000 profiles).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, exists
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from ecrm.profiles.models import Profile


class Member(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("listed", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("found", InternalTraversal.dp_clauseelement)]

    def __init__(self, listed: ColumnElement[bool], found: ColumnElement[bool]) -> None:
        self.listed, self.found = listed, found


@compiles(Member, "sqlite")
def _member_sqlite(element: Member, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.listed, **kw)


@compiles(Member, "postgresql")
def _member_pg(element: Member, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.found, **kw)


def member(ids: Select[Any]) -> ColumnElement[bool]:
    """True when the profile's id is among `ids` (a query whose first column is a profile id,
    never NULL): never NULL itself."""
    rows = ids.subquery("members")
    return Member(Profile.id.in_(ids), exists().where(rows.c[0] == Profile.id))
