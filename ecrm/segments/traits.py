"""Reading one trait out of `profiles.traits` (JSON) in SQL, the same way on SQLite and PostgreSQL.

A trait is read as one kind at a time, and a value of another kind reads as NULL:

- text: a JSON string;
- number: a JSON number (within +-1e300), or a JSON string written as a plain decimal (`300`,
  `-12`, `300.5`, at most 40 characters), both as double precision;
- date: a JSON string starting with an ISO date (`2026-01-31`, `2026-01-31T09:00:00Z`): its
  first 10 characters, which order as dates do;
- true / false: a JSON boolean.

The same reading serves an event's `properties` (`source=EVENT_PROPERTIES`). The expressions
are SQLAlchemy constructs compiled per dialect (json_type / json_extract on
SQLite, jsonb_typeof / ->> on PostgreSQL); the trait's name is validated to [A-Za-z0-9_-] and
written into the SQL as a literal, so the statement cache keys on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, Float, String, and_, case, cast, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from ecrm.profiles.models import Event, Profile

SQLITE_KINDS = {"string": "'text'", "number": "'integer', 'real'", "true": "'true'", "false": "'false'"}
NUMERIC_PG = r"'^-?[0-9]+(\.[0-9]+)?$'"
MAX_NUMBER_TEXT = 40
MAX_NUMBER = "1e300"
PROFILE_TRAITS: ColumnElement[Any] = Profile.__table__.c.traits
EVENT_PROPERTIES: ColumnElement[Any] = Event.__table__.c.properties


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class TraitIs(ColumnElement[bool]):
    """The trait is present and of `kind` (string, number, true, false)."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("trait", InternalTraversal.dp_string), ("kind", InternalTraversal.dp_string),  # noqa: RUF012
                           ("source", InternalTraversal.dp_clauseelement)]

    def __init__(self, key: str, kind: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> None:
        self.trait, self.kind, self.source = key, kind, source


class TraitRaw(ColumnElement[str]):
    """The trait's scalar as the database extracts it (text of a string, a number, ...)."""

    inherit_cache = True
    type = String()
    _traverse_internals = [("trait", InternalTraversal.dp_string),  # noqa: RUF012
                           ("source", InternalTraversal.dp_clauseelement)]

    def __init__(self, key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> None:
        self.trait, self.source = key, source


class LooksLike(ColumnElement[bool]):
    """`text` is a plain decimal number (`numeric`) or starts with an ISO date (`date`)."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("text", InternalTraversal.dp_clauseelement), ("form", InternalTraversal.dp_string)]  # noqa: RUF012

    def __init__(self, text: ColumnElement[Any], form: str) -> None:
        self.text, self.form = text, form


class Contains(ColumnElement[bool]):
    """`needle` occurs in `text`, case and accents as written (LIKE is case-blind on SQLite)."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("text", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("needle", InternalTraversal.dp_clauseelement)]

    def __init__(self, text: ColumnElement[Any], needle: ColumnElement[Any]) -> None:
        self.text, self.needle = text, needle


def _path(key: str) -> str:
    return _quoted(f'$."{key}"')


def _traits(compiler: SQLCompiler, element: Any, **kw: Any) -> str:
    return compiler.process(element.source, **kw)


@compiles(TraitIs, "sqlite")
def _is_sqlite(element: TraitIs, compiler: SQLCompiler, **kw: Any) -> str:
    path = _path(element.trait)
    return f"(json_type({_traits(compiler, element, **kw)}, {path}) IN ({SQLITE_KINDS[element.kind]}))"


@compiles(TraitIs, "postgresql")
def _is_pg(element: TraitIs, compiler: SQLCompiler, **kw: Any) -> str:
    column, key = _traits(compiler, element, **kw), _quoted(element.trait)
    if element.kind in ("true", "false"):
        return f"(({column} -> {key}) = '{element.kind}'::jsonb)"
    return f"(jsonb_typeof({column} -> {key}) = '{element.kind}')"


@compiles(TraitRaw, "sqlite")
def _raw_sqlite(element: TraitRaw, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({_traits(compiler, element, **kw)}, {_path(element.trait)})"


@compiles(TraitRaw, "postgresql")
def _raw_pg(element: TraitRaw, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({_traits(compiler, element, **kw)} ->> {_quoted(element.trait)})"


@compiles(LooksLike, "sqlite")
def _looks_sqlite(element: LooksLike, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.text, **kw)
    if element.form == "date":
        return f"({text} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*')"
    digits = f"(CASE WHEN substr({text}, 1, 1) = '-' THEN substr({text}, 2) ELSE {text} END)"
    return (f"({digits} <> '' AND {digits} NOT GLOB '*[^0-9.]*' AND {digits} NOT GLOB '*.*.*' "
            f"AND {digits} NOT GLOB '.*' AND {digits} NOT GLOB '*.' AND length({text}) <= {MAX_NUMBER_TEXT})")


@compiles(LooksLike, "postgresql")
def _looks_pg(element: LooksLike, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.text, **kw)
    if element.form == "date":
        return f"({text} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')"
    return f"({text} ~ {NUMERIC_PG} AND length({text}) <= {MAX_NUMBER_TEXT})"


@compiles(Contains, "sqlite")
def _contains_sqlite(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(instr({compiler.process(element.text, **kw)}, {compiler.process(element.needle, **kw)}) > 0)"


@compiles(Contains, "postgresql")
def _contains_pg(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(strpos({compiler.process(element.text, **kw)}, {compiler.process(element.needle, **kw)}) > 0)"


class JsonNumber(ColumnElement[float]):
    """A JSON number as double precision; NULL beyond +-1e300, which PostgreSQL's JSONB keeps
    exactly but cannot cast (a hostile 400-digit trait must not fail the whole audience)."""

    inherit_cache = True
    type = Float()
    _traverse_internals = [("trait", InternalTraversal.dp_string),  # noqa: RUF012
                           ("source", InternalTraversal.dp_clauseelement)]

    def __init__(self, key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> None:
        self.trait, self.source = key, source


@compiles(JsonNumber, "sqlite")
def _number_sqlite(element: JsonNumber, compiler: SQLCompiler, **kw: Any) -> str:
    real = f"CAST(json_extract({_traits(compiler, element, **kw)}, {_path(element.trait)}) AS REAL)"
    return f"(CASE WHEN abs({real}) < {MAX_NUMBER} THEN {real} END)"  # abs of the lowest integer overflows


@compiles(JsonNumber, "postgresql")
def _number_pg(element: JsonNumber, compiler: SQLCompiler, **kw: Any) -> str:
    exact = f"CAST(({_traits(compiler, element, **kw)} ->> {_quoted(element.trait)}) AS NUMERIC)"
    return (f"(CASE WHEN abs({exact}) < {MAX_NUMBER} "
            f"THEN CAST(round({exact}, 300) AS DOUBLE PRECISION) END)")


def trait_text(key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> ColumnElement[str]:
    return case((TraitIs(key, "string", source), TraitRaw(key, source)), else_=None)


def trait_number(key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> ColumnElement[float]:
    raw = TraitRaw(key, source)
    return case((TraitIs(key, "number", source), JsonNumber(key, source)),
                (and_(TraitIs(key, "string", source), LooksLike(raw, "numeric")), cast(raw, Float)), else_=None)


def trait_date(key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> ColumnElement[str]:
    raw = TraitRaw(key, source)
    return case((and_(TraitIs(key, "string", source), LooksLike(raw, "date")), func.substr(raw, 1, 10)),
                else_=None)


def trait_present(key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> ColumnElement[bool]:
    """Present and not JSON null (objects and lists count as present)."""
    return TraitIsAny(key, source)


class TraitIsAny(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("trait", InternalTraversal.dp_string),  # noqa: RUF012
                           ("source", InternalTraversal.dp_clauseelement)]

    def __init__(self, key: str, source: ColumnElement[Any] = PROFILE_TRAITS) -> None:
        self.trait, self.source = key, source


@compiles(TraitIsAny, "sqlite")
def _any_sqlite(element: TraitIsAny, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(coalesce(json_type({_traits(compiler, element, **kw)}, {_path(element.trait)}), 'null') <> 'null')"


@compiles(TraitIsAny, "postgresql")
def _any_pg(element: TraitIsAny, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(coalesce(jsonb_typeof({_traits(compiler, element, **kw)} -> {_quoted(element.trait)}), 'null') <> 'null')"


def text_literal(value: str) -> ColumnElement[str]:
    return literal(value, String)
