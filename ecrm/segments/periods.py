"""When an event or an order counts: `within: 2h` (exact, back from the evaluation instant),
`between: [start, end]` (inclusive; dates are whole UTC days) or `window: this_month` (from
the start of the calendar period in the profile's own time zone up to the instant).

A window's start differs by time zone, and SQLite has no time zone database: the starts are
computed in Python (zoneinfo, DST-correct) for every zone and written into the query as one
CASE over `profiles.time_zone`, zones sharing a start grouped in one branch; a zone zoneinfo
does not know counts as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import ColumnElement, case, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from ecrm.db import UtcDateTime
from ecrm.segments.comparisons import day_start
from ecrm.segments.rules import Rule
from ecrm.segments.values import parse_duration
from ecrm.segments.vocabulary import Window


def in_period(column: Any, rule: Rule, now: datetime, zone: Any = None) -> list[ColumnElement[bool]]:
    """Conditions on the time `column` for the rule's period (none: any time). `zone` is the
    profile's time zone column, needed for a calendar window."""
    if rule.within is not None:
        return [column > now - parse_duration(rule.within), column <= now]
    if rule.between is not None:
        start, end = rule.between
        if isinstance(start, datetime):
            return [column >= start, column <= end]
        last = [column < day_start(end + timedelta(days=1))] if end < date.max else []
        return [column >= day_start(start), *last]
    if rule.window is not None:  # the earliest start of any zone lets an index on the time narrow the rows
        return [column >= earliest_start(rule.window, now), column >= window_start(rule.window, now, zone),
                column <= now]
    return []


def window_start(window: Window, now: datetime, zone: Any) -> ColumnElement[datetime]:
    """The start of the window in each profile's zone, as one CASE over the zone column."""
    groups: dict[datetime, list[str]] = {}
    for name in zone_names():
        groups.setdefault(local_start(window, now, ZoneInfo(name)), []).append(name)
    utc = local_start(window, now, ZoneInfo("UTC"))
    branches = [(zone.in_(sorted(names)), literal(start, UtcDateTime())) for start, names in sorted(groups.items())
                if start != utc]
    return case(*branches, else_=literal(utc, UtcDateTime())) if branches else literal(utc, UtcDateTime())


def earliest_start(window: Window, now: datetime) -> datetime:
    return min(local_start(window, now, ZoneInfo(name)) for name in (*zone_names(), "UTC"))


def local_start(window: Window, now: datetime, zone: ZoneInfo) -> datetime:
    """The first instant of the calendar period holding `now` in `zone`, in UTC."""
    here = now.astimezone(zone)
    day = here.date()
    first = {
        Window.TODAY: day,
        Window.THIS_WEEK: day - timedelta(days=day.weekday()),
        Window.THIS_MONTH: day.replace(day=1),
        Window.THIS_YEAR: date(day.year, 1, 1),
    }[window]
    # Local midnight with fold=0: in a zone whose clocks skip midnight this lands on the
    # moment the day starts; where midnight happens twice, on the first.
    return datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)


@cache
def zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


class PlusSeconds(ColumnElement[datetime]):
    """A stored time plus a whole number of seconds, exact on both databases (SQLite keeps times
    as 'YYYY-MM-DD HH:MM:SS.ffffff' text: the seconds move, the fraction stays)."""

    inherit_cache = True
    type = UtcDateTime()
    _traverse_internals = [("time", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("seconds", InternalTraversal.dp_plain_obj)]

    def __init__(self, time: Any, seconds: int) -> None:
        self.time, self.seconds = time, seconds


@compiles(PlusSeconds, "sqlite")
def _plus_sqlite(element: PlusSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    time = compiler.process(element.time, **kw)
    return f"(datetime({time}, '+{int(element.seconds)} seconds') || substr({time}, 20))"


@compiles(PlusSeconds, "postgresql")
def _plus_pg(element: PlusSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.time, **kw)} + interval '{int(element.seconds)} seconds')"


