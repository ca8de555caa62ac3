"""Audience rules compiled to SQL select the right people on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.models import Profile
from ecrm.segments.compile import compile_audience
from ecrm.segments.rules import Audience
from ecrm.segments.stream import stream_members
from ecrm.types import ChannelKind
from tests.conftest import T0
from tests.factories import add_profile, add_profiles


async def members(sessions: async_sessionmaker[AsyncSession], rules: list[dict[str, object]],
                  consent: str = "required") -> set[str]:
    audience = Audience.model_validate({"rules": rules, "consent": consent})
    ids = [i async for batch in stream_members(sessions, compile_audience(audience, ChannelKind.EMAIL, T0), 2)
           for i in batch]
    async with sessions() as session:
        return {(await session.get_one(Profile, pid)).external_id for pid in ids}


async def test_rules_on_columns_and_traits_combine_with_consent(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profile(sessions, external_id="vip-fa", locale="fa", traits={"vip": True, "ltv": 900, "city": "Tehran"})
    await add_profile(sessions, external_id="vip-en", locale="en", traits={"vip": True, "ltv": 50})
    await add_profile(sessions, external_id="plain-th", locale="th", traits={"ltv": 300.5})
    await add_profile(sessions, external_id="vip-no-consent", locale="fa", consent=None, traits={"vip": True})
    await add_profile(sessions, external_id="vip-withdrawn", locale="fa", consent="withdrawn", traits={"vip": True})

    assert await members(sessions, []) == {"vip-fa", "vip-en", "plain-th"}
    assert await members(sessions, [], consent="ignore") == {"vip-fa", "vip-en", "plain-th", "vip-no-consent",
                                                            "vip-withdrawn"}
    assert await members(sessions, [{"field": "traits.vip", "value": True}]) == {"vip-fa", "vip-en"}
    assert await members(sessions, [{"field": "locale", "op": "in", "value": ["fa", "th"]}]) == {"vip-fa", "plain-th"}
    assert await members(sessions, [{"field": "traits.ltv", "op": "gte", "value": 300}]) == {"vip-fa", "plain-th"}
    assert await members(sessions, [{"field": "traits.city", "op": "exists"}]) == {"vip-fa"}
    # A missing trait fails `ne` too; `not:` is the complement, NULLs included.
    assert await members(sessions, [{"field": "traits.city", "op": "ne", "value": "Tehran"}]) == set()
    assert await members(sessions, [{"not": {"field": "traits.city", "op": "eq", "value": "Tehran"}}]) == \
        {"vip-en", "plain-th"}
    assert await members(sessions, [{"field": "locale", "op": "not_in", "value": ["fa"]},
                                    {"field": "traits.vip", "value": True}]) == {"vip-en"}
    assert await members(sessions, [{"field": "email", "op": "contains", "value": "plain"}]) == {"plain-th"}


async def test_language_matches_the_bare_language_and_its_regional_locales(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    for external_id, locale in (("fa", "fa"), ("fa-ir", "fa_IR"), ("fil", "fil"), ("en-us", "en_US"), ("th", "th")):
        await add_profile(sessions, external_id=external_id, locale=locale)

    assert await members(sessions, [{"field": "language", "op": "in", "value": ["fa", "en"]}]) == \
        {"fa", "fa-ir", "en-us"}
    assert await members(sessions, [{"field": "language", "value": "fi"}]) == set()
    assert await members(sessions, [{"field": "language", "op": "not_in", "value": ["fa"]}]) == \
        {"fil", "en-us", "th"}


async def test_profiles_without_an_address_are_left_out(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profile(sessions, external_id="has-email")
    pid = await add_profile(sessions, external_id="no-email")
    async with sessions.begin() as session:
        (await session.get_one(Profile, pid)).email = None
    assert await members(sessions, []) == {"has-email"}


async def test_streaming_returns_every_member_once_in_batches(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profiles(sessions, 7)
    query = compile_audience(Audience(), ChannelKind.EMAIL, T0)
    batches = [batch async for batch in stream_members(sessions, query, 3)]
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [i for b in batches for i in b]
    assert flat == sorted(set(flat))
