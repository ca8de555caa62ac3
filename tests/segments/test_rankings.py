"""Stored RFM rankings (`ecrm.segments.rankings`), on SQLite and PostgreSQL: the same members as
ranking in the query, re-ranked once older than the allowed age, a window ranked in the query,
one ranking per money basis, and the rows gone with an erased profile."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.erase import erase_profile
from ecrm.profiles.models import Profile
from ecrm.segments.compile import compile_audience
from ecrm.segments.models import RfmRank, RfmRanking
from ecrm.segments.rankings import ranked
from ecrm.segments.rules import Audience
from ecrm.types import ChannelKind
from tests.segments.test_events_and_metrics import NOW, ordered

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
RFM = {"metric": "rfm", "currency": "EUR"}


async def ids(sessions: async_sessionmaker[AsyncSession], audience: Audience) -> set[str]:
    async with sessions() as session:
        found = (await session.scalars(compile_audience(audience, ChannelKind.EMAIL, NOW))).all()
        return set(await session.scalars(select(Profile.external_id).where(Profile.id.in_(found))))


def audience_of(rule: dict[str, Any]) -> Audience:
    return Audience.model_validate({"all": [rule], "consent": "ignore"})


async def ten_buyers(sessions: async_sessionmaker[AsyncSession]) -> None:
    for n in range(1, 11):  # p1 ordered once long ago, cheaply ... p10 ten times lately, for a lot
        await ordered(sessions, f"p{n}", *((str(n * 10), "EUR", NOW - (11 - n) * DAY) for _ in range(n)))


async def test_a_stored_ranking_selects_whom_the_query_ranks(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    rules: list[dict[str, Any]] = [
        {**RFM, "op": "eq", "value": "5-5-5"}, {**RFM, "op": "in", "value": ["1-1-1", "3-3-3"]},
        {**RFM, "op": "ne", "value": "5-5-5"}, {"metric": "frequency", "op": "gte", "value": 4},
        {"not": {"metric": "recency", "op": "gte", "value": 2}}]
    for rule in rules:
        audience = audience_of(rule)
        stored = await ranked(sessions, audience, NOW, HOUR)
        assert await ids(sessions, stored) == await ids(sessions, audience), rule
    assert await ids(sessions, await ranked(sessions, audience_of(rules[0]), NOW, HOUR)) == {"p9", "p10"}
    async with sessions() as session:  # EUR and "no money" (frequency, recency): two bases, ranked once each
        assert await session.scalar(select(func.count()).select_from(RfmRanking)) == 2
        assert await session.scalar(select(func.count()).select_from(RfmRank)) == 20


async def test_the_ranking_is_kept_for_its_age_then_ranked_again(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    best = audience_of({**RFM, "op": "eq", "value": "5-5-5"})
    assert await ids(sessions, await ranked(sessions, best, NOW, HOUR)) == {"p9", "p10"}
    await ordered(sessions, "newcomer", *(("500", "EUR", NOW - HOUR) for _ in range(20)))
    assert await ids(sessions, best) == {"p10", "newcomer"}  # ranked in the query: at once
    # within the hour the stored ranking stands, as documented; an hour later it is ranked again
    assert await ids(sessions, await ranked(sessions, best, NOW + 30 * 60 * timedelta(seconds=1), HOUR)) == \
        {"p9", "p10"}
    assert await ids(sessions, await ranked(sessions, best, NOW + HOUR + timedelta(seconds=1), HOUR)) == \
        {"p10", "newcomer"}
    assert await ids(sessions, await ranked(sessions, best, NOW, timedelta(0))) == {"p10", "newcomer"}


async def test_a_ranking_from_after_the_instant_asked_about_is_not_used(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    best = audience_of({**RFM, "op": "eq", "value": "5-5-5"})
    await ranked(sessions, best, NOW + DAY, HOUR)
    await ranked(sessions, best, NOW, HOUR)
    async with sessions() as session:
        assert await session.scalar(select(RfmRanking.ranked_at)) == NOW


async def test_rules_with_a_period_rank_in_the_query(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    windowed = audience_of({**RFM, "window": "this_month", "op": "eq", "value": "5-5-5"})
    assert await ranked(sessions, windowed, NOW, HOUR) == windowed
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(RfmRanking)) == 0


async def test_named_segments_and_rates_are_ranked_by_their_basis(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    rates = {"EUR": Decimal(1), "USD": Decimal("0.5")}
    converted = {"metric": "monetary", "op": "eq", "value": 5, "rates": rates}
    nested = {"any": [{"not": {"all": [converted]}}, {"segment": "vip", "definition": {**RFM, "op": "eq",
                                                                                      "value": "5-5-5"}}]}
    audience = audience_of(nested)
    stored = await ranked(sessions, audience, NOW, HOUR)
    assert await ids(sessions, stored) == await ids(sessions, audience)
    async with sessions() as session:
        described = set(await session.scalars(select(RfmRanking.described)))
    assert described == {"currency EUR", "rates EUR=1 USD=0.5"}


async def test_an_erased_profile_leaves_the_ranking(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ten_buyers(sessions)
    await ranked(sessions, audience_of({**RFM, "op": "eq", "value": "5-5-5"}), NOW, HOUR)
    async with sessions.begin() as session:
        gone = await session.scalar(select(Profile.id).where(Profile.external_id == "p10"))
        assert gone is not None
        await erase_profile(session, gone)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(RfmRank)) == 9
