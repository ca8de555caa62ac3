"""`ecrm segment count | preview | explain FILE|NAME`: a named segment's size, its first
members, its SQL and plan, as text or JSON. The command line (`ecrm.cli`) parses the arguments
and hands over its clock; these functions load the segment, query and print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import session_factory
from ecrm.segments.inspect import PreviewRow, count_members, explain_plan, preview_members, sql_text
from ecrm.segments.library import NamedSegment, find_segment
from ecrm.segments.members import member_query
from ecrm.segments.rankings import rank_age, ranked
from ecrm.settings import Settings
from ecrm.types import ChannelKind

TRAITS_SHOWN = 3
TRAIT_WIDTH = 24


@dataclass(frozen=True)
class SegmentQuestion:
    """What a segment command was asked: which segment, on which channel, at what instant."""

    segment: NamedSegment
    channel: ChannelKind | None
    now: datetime
    rank_age: timedelta = timedelta(0)

    @classmethod
    def load(cls, settings: Settings, ref: str, channel: str | None, now: datetime) -> SegmentQuestion:
        segment = find_segment(ref, settings.segments_dir, settings.money)
        return cls(segment, ChannelKind(channel) if channel else None, now, rank_age(settings))

    async def query(self, engine: AsyncEngine) -> Select[int]:
        """The members' query, its RFM rules reading a stored ranking (ranked first if stale)."""
        audience = await ranked(session_factory(engine), self.segment.audience, self.now, self.rank_age)
        return member_query(audience, self.now, self.channel)

    def header(self) -> dict[str, Any]:
        return {"segment": self.segment.name, "channel": self.channel.value if self.channel else None,
                "at": self.now.isoformat()}


async def segment_count(engine: AsyncEngine, question: SegmentQuestion, as_json: bool, out: Console) -> int:
    query = await question.query(engine)
    count = await count_members(session_factory(engine), query)
    if as_json:
        _json(out, {**question.header(), "count": count})
    else:
        out.print(str(count), highlight=False)
    return 0


async def segment_preview(engine: AsyncEngine, question: SegmentQuestion, limit: int, as_json: bool,
                          out: Console) -> int:
    query = await question.query(engine)
    rows = await preview_members(session_factory(engine), query, limit)
    if as_json:
        body = {**question.header(), "profiles": [row.as_json() for row in rows]}
        _json(out, body)
    else:
        out.print(preview_table(question.segment.name, rows))
    return 0


def _json(out: Console, body: dict[str, Any]) -> None:
    out.print(json.dumps(body, ensure_ascii=False), highlight=False, markup=False, soft_wrap=True)


def preview_table(name: str, rows: list[PreviewRow]) -> Table:
    table = Table(title=f"{name}: first {len(rows)} profile(s)")
    for column in ("external_id", "email", "phone", "locale", "traits"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = (row.external_id, row.email or "", row.phone or "", row.locale, _traits(row.traits))
        table.add_row(*(Text(cell) for cell in cells))  # as written: a "[" in an id is not rich markup
    return table


def _traits(traits: dict[str, Any]) -> str:
    shown = [f"{key}={json.dumps(value, ensure_ascii=False)[:TRAIT_WIDTH]}"
             for key, value in list(traits.items())[:TRAITS_SHOWN]]
    more = len(traits) - TRAITS_SHOWN
    return ", ".join(shown) + (f" (+{more})" if more > 0 else "")


async def segment_explain(engine: AsyncEngine, question: SegmentQuestion, analyze: bool, as_json: bool,
                          out: Console) -> int:
    query = await question.query(engine)
    sql = sql_text(query, engine.dialect)
    plan = await explain_plan(session_factory(engine), query, analyze)
    if as_json:
        body = {**question.header(), "dialect": engine.dialect.name, "sql": sql, "plan": plan}
        _json(out, body)
        return 0
    out.print(sql, highlight=False, markup=False)
    if plan is None:
        out.print(f"-- no plan: EXPLAIN is shown on PostgreSQL only ({engine.dialect.name} here)",
                  highlight=False, markup=False)
    else:
        out.print("\n".join(["", "-- plan", *plan]), highlight=False, markup=False)
    return 0
