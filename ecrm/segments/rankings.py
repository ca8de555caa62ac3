"""Stored RFM rankings: the quintiles of every buyer, ranked once and read by each RFM rule.

Ranking 500,000 buyers is three sorts of every buyer, seconds on PostgreSQL, and a quintile
moves whenever anyone orders; so, as shops do, the ranking is kept: `ranked()` ranks each basis
(the money ranked: a currency, or the base currency with its rates) that the audience's RFM
rules need when its last ranking is older than `segment_rank_minutes` (0: rank for every
query), and marks those rules `ranked`, so the compiler reads `rfm_ranks` instead of ranking
in the query. Rules with a period (`window`, `within`, `between`) rank in the query, as does
a rule tree that was not passed through `ranked()`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, delete, insert, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.segments.models import RfmRank, RfmRanking
from ecrm.segments.rfm import basis, cell_number, describe, ranked_query
from ecrm.segments.rules import Audience, Rule
from ecrm.segments.vocabulary import QUINTILE_METRICS, Metric

if TYPE_CHECKING:
    from ecrm.settings import Settings


def rank_age(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.segment_rank_minutes)


async def ranked(sessions: async_sessionmaker[AsyncSession], audience: Audience, now: datetime,
                 max_age: timedelta) -> Audience:
    """The audience with its RFM rules reading a ranking at most `max_age` old as of `now`
    (ranked first where there is none)."""
    rules = rankable(audience.root())
    if not rules:
        return audience
    for rule in {basis(rule): rule for rule in rules}.values():
        await ensure_ranking(sessions, rule, now, max_age)
    update: dict[str, object] = {name: [_marked(child) for child in getattr(audience, name)]
                                 for name in ("rules", "all_", "any_") if getattr(audience, name) is not None}
    if audience.not_ is not None:
        update["not_"] = _marked(audience.not_)
    return audience.model_copy(update=update)


def rankable(rule: Rule) -> list[Rule]:
    """The RFM rules in the tree (named segments' included) that a stored ranking can answer."""
    own = [rule] if _stored(rule) else []
    return own + [found for child in rule.children() for found in rankable(child)]


async def ensure_ranking(sessions: async_sessionmaker[AsyncSession], rule: Rule, now: datetime,
                         max_age: timedelta) -> None:
    key = basis(rule)
    async with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":  # one ranker per basis at a time; readers see the last one
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"rfm:{key}"})
        last = await session.scalar(select(RfmRanking.ranked_at).where(RfmRanking.basis == key))
        if last is not None and now - max_age <= last <= now and max_age > timedelta(0):
            return
        await _rank(session, rule, key, now)


async def _rank(session: AsyncSession, rule: Rule, key: str, now: datetime) -> None:
    ranks = ranked_query(rule, now).subquery("ranks")
    await session.execute(delete(RfmRank).where(RfmRank.basis == key))
    columns = ranks.c
    stored = await session.execute(insert(RfmRank).from_select(
        ["basis", "profile_id", "recency", "frequency", "monetary", "cell"],
        select(literal(key), columns.profile_id, columns.recency, columns.frequency, columns.monetary,
               cell_number(columns))))
    if session.get_bind().dialect.name == "postgresql":  # the planner's idea of a cell's size, before autovacuum's
        await session.execute(text("ANALYZE rfm_ranks"))
    await session.merge(RfmRanking(basis=key, described=describe(rule), ranked_at=now,
                                    buyers=int(cast(CursorResult[Any], stored).rowcount or 0)))


def _stored(rule: Rule) -> bool:
    quintile = rule.metric is Metric.RFM or rule.metric in QUINTILE_METRICS
    return quintile and rule.within is None and rule.between is None and rule.window is None


def _marked(rule: Rule) -> Rule:
    if _stored(rule):
        return rule.model_copy(update={"ranked": True})
    update: dict[str, object] = {}
    if rule.all_ is not None:
        update["all_"] = [_marked(child) for child in rule.all_]
    if rule.any_ is not None:
        update["any_"] = [_marked(child) for child in rule.any_]
    if rule.not_ is not None:
        update["not_"] = _marked(rule.not_)
    if rule.definition is not None:
        update["definition"] = _marked(rule.definition)
    return rule.model_copy(update=update) if update else rule
