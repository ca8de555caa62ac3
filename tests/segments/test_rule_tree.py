"""The compiled rule tree selects exactly whom the plain evaluator selects, on SQLite and
PostgreSQL: random profiles (NULLs, missing traits, Persian and Thai text, numbers kept as
strings, ISO dates) against random trees of all / any / not; then the edge cases one by one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.models import Consent, Profile
from ecrm.segments.compile import compile_audience
from ecrm.segments.rules import Audience, ConsentPolicy, Rule
from ecrm.types import ChannelKind
from tests.conftest import T0
from tests.factories import add_profile
from tests.segments.evaluator import matches

TEXT = st.text(alphabet="aTeh تهرانกรุงเทพ19-.", max_size=5)
NUMBER_TEXT = st.sampled_from(["12", "12.5", "-3", "007", "0", "1e3", "12a", " 12", "", "-", "1.", ".5", "۱۲"])
DAYS = st.dates(date(2025, 10, 1), date(2026, 4, 1))
TRAIT_VALUE = st.one_of(
    st.none(), TEXT, NUMBER_TEXT, st.booleans(), st.integers(-5, 200), st.floats(-5, 200).map(lambda f: round(f, 2)),
    DAYS.map(date.isoformat), DAYS.map(lambda d: f"{d.isoformat()}T23:30:00+03:30"), st.just([1, 2]),
)
TRAITS = ("city", "points", "vip", "born")
PROFILE = st.fixed_dictionaries({
    "first_name": st.none() | TEXT,
    "last_name": st.none() | TEXT,
    "locale": st.sampled_from(["en", "fa", "fa_IR", "th", "fil"]),
    "created_at": st.integers(-100 * 86400, 3600).map(lambda s: T0 + timedelta(seconds=s)),
    "traits": st.dictionaries(st.sampled_from(TRAITS), TRAIT_VALUE, max_size=4),
})
NUMBER = st.integers(-5, 200) | st.floats(-5, 200).map(lambda f: round(f, 1))
DURATION = st.one_of(st.integers(0, 120).map(lambda n: f"{n}d"), st.integers(0, 48).map(lambda n: f"{n}h"),
                     st.integers(0, 90).map(lambda n: f"{n}m"))


def _pair(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(values, min_size=2, max_size=2).map(sorted)


def _ops(values: st.SearchStrategy[Any], ops: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    single = st.fixed_dictionaries({"op": st.sampled_from(ops), "value": values})
    listed = st.fixed_dictionaries({"op": st.sampled_from(["in", "not_in"]),
                                    "value": st.lists(values, min_size=1, max_size=3)})
    return single | listed


ORDERED = ("eq", "ne", "gt", "gte", "lt", "lte")
TRAIT_TESTS = st.one_of(
    _ops(TEXT.filter(bool), ("eq", "ne", "contains", "starts_with")),
    _ops(NUMBER, ORDERED), _ops(DAYS, ORDERED), _ops(st.booleans(), ("eq", "ne")),
    st.fixed_dictionaries({"op": st.just("between"), "value": _pair(NUMBER) | _pair(DAYS)}),
    st.fixed_dictionaries({"op": st.sampled_from(["older_than", "newer_than"]), "value": DURATION}),
    st.fixed_dictionaries({"op": st.sampled_from(["exists", "not_exists"])}),
)
LEAF = st.one_of(
    st.builds(lambda key, test: {"field": f"traits.{key}", **test}, st.sampled_from(TRAITS), TRAIT_TESTS),
    st.builds(lambda field, test: {"field": field, **test}, st.sampled_from(["first_name", "last_name"]),
              _ops(TEXT.filter(bool), ("eq", "ne", "contains", "starts_with"))
              | st.fixed_dictionaries({"op": st.sampled_from(["exists", "not_exists"])})),
    _ops(st.sampled_from(["fa", "en", "fi"]), ("eq", "ne")).map(lambda test: {"field": "language", **test}),
    st.one_of(
        st.fixed_dictionaries({"op": st.sampled_from(["older_than", "newer_than"]), "value": DURATION}),
        st.fixed_dictionaries({"op": st.sampled_from(ORDERED), "value": DAYS}),
        st.fixed_dictionaries({"op": st.just("between"), "value": _pair(DAYS)}),
        st.fixed_dictionaries({"op": st.sampled_from(ORDERED),
                               "value": st.integers(-100 * 86400, 3600).map(lambda s: T0 + timedelta(seconds=s))}),
    ).map(lambda test: {"field": "created_at", **test}),
)
TREE = st.recursive(LEAF, lambda children: st.one_of(
    st.lists(children, max_size=3).map(lambda rules: {"all": rules}),
    st.lists(children, max_size=3).map(lambda rules: {"any": rules}),
    children.map(lambda rule: {"not": rule}),
), max_leaves=8)


async def selected(sessions: async_sessionmaker[AsyncSession], audience: Audience, now: datetime) -> set[str]:
    async with sessions() as session:
        ids = (await session.scalars(compile_audience(audience, ChannelKind.EMAIL, now))).all()
        rows = await session.scalars(select(Profile.external_id).where(Profile.id.in_(ids)))
        return set(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profiles=st.lists(PROFILE, max_size=8), tree=TREE, later=st.integers(0, 3 * 86400))
async def test_the_compiled_tree_selects_whom_the_evaluator_selects(
    sessions: async_sessionmaker[AsyncSession], profiles: list[dict[str, Any]], tree: dict[str, Any], later: int
) -> None:
    now = T0 + timedelta(seconds=later)
    async with sessions.begin() as session:
        await session.execute(delete(Consent))
        await session.execute(delete(Profile))
        session.add_all(Profile(external_id=f"p{i}", email=f"p{i}@example.com", updated_at=p["created_at"], **p)
                        for i, p in enumerate(profiles))
    rule = Rule.model_validate(tree)
    expected = {f"p{i}" for i, p in enumerate(profiles) if matches(rule, p, now)}
    assert await selected(sessions, Audience(all_=[rule], consent=ConsentPolicy.IGNORE), now) == expected


async def members(sessions: async_sessionmaker[AsyncSession], audience: dict[str, Any], now: datetime = T0) -> set[str]:
    return await selected(sessions, Audience.model_validate({**audience, "consent": "ignore"}), now)


async def test_null_and_missing_fail_every_comparison_and_not_takes_them_in(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_profile(sessions, external_id="tehran", traits={"city": "Tehran"})
    await add_profile(sessions, external_id="null", traits={"city": None})
    await add_profile(sessions, external_id="missing")
    await add_profile(sessions, external_id="number", traits={"city": 42})
    city = {"field": "traits.city"}

    assert await members(sessions, {"all": [{**city, "op": "ne", "value": "Shiraz"}]}) == {"tehran"}
    assert await members(sessions, {"all": [{**city, "op": "not_in", "value": ["Shiraz"]}]}) == {"tehran"}
    assert await members(sessions, {"not": {**city, "op": "eq", "value": "Tehran"}}) == {"null", "missing", "number"}
    assert await members(sessions, {"all": [{**city, "op": "not_exists"}]}) == {"null", "missing"}
    assert await members(sessions, {"not": {"not": {**city, "op": "ne", "value": "Shiraz"}}}) == {"tehran"}
    assert await members(sessions, {"any": []}) == set()
    assert await members(sessions, {"all": []}) == {"tehran", "null", "missing", "number"}


async def test_numbers_stored_as_text_compare_as_numbers(sessions: async_sessionmaker[AsyncSession]) -> None:
    for name, points in (("int", 120), ("text", "120"), ("decimal", "99.5"), ("padded", " 120"),
                         ("persian-digits", "۱۲۰"), ("word", "many"), ("exp", "1e3"), ("huge", 10**400),
                         ("huge-text", "9" * 41), ("big", 1e308), ("tiny", 1e-320),
                         ("lowest", -(2**63))):
        await add_profile(sessions, external_id=name, traits={"points": points})
    rule = {"field": "traits.points"}
    assert await members(sessions, {"all": [{**rule, "op": "gte", "value": 100}]}) == {"int", "text"}
    assert await members(sessions, {"all": [{**rule, "op": "between", "value": [99.5, 120]}]}) == \
        {"int", "text", "decimal"}
    assert await members(sessions, {"all": [{**rule, "op": "eq", "value": "120"}]}) == {"text"}


async def test_unicode_text_ops_are_exact(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profile(sessions, external_id="fa", first_name="سارا", traits={"city": "تهران"})
    await add_profile(sessions, external_id="th", first_name="สมชาย", traits={"city": "กรุงเทพมหานคร"})
    await add_profile(sessions, external_id="en", first_name="Sara", traits={"city": "Tehran_100%"})
    city = {"field": "traits.city"}
    assert await members(sessions, {"all": [{**city, "op": "starts_with", "value": "تهر"}]}) == {"fa"}
    assert await members(sessions, {"all": [{**city, "op": "contains", "value": "เทพ"}]}) == {"th"}
    assert await members(sessions, {"all": [{**city, "op": "contains", "value": "_100%"}]}) == {"en"}
    assert await members(sessions, {"all": [{**city, "op": "contains", "value": "tehran"}]}) == set()  # case counts
    assert await members(sessions, {"all": [{"field": "first_name", "op": "in", "value": ["سارا", "Sara"]}]}) == \
        {"fa", "en"}


async def test_durations_are_exact_and_dates_compare_as_dates(sessions: async_sessionmaker[AsyncSession]) -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    await add_profile(sessions, external_id="30d-ago", now=now - timedelta(days=30), traits={"born": "1990-05-01"})
    await add_profile(sessions, external_id="30d-less-1s", now=now - timedelta(days=30) + timedelta(seconds=1),
                      traits={"born": "1990-05-01T23:59:59+03:30"})
    await add_profile(sessions, external_id="today", now=now, traits={"born": "not a date"})
    created = {"field": "created_at"}
    assert await members(sessions, {"all": [{**created, "op": "older_than", "value": "30d"}]}, now) == {"30d-ago"}
    assert await members(sessions, {"all": [{**created, "op": "newer_than", "value": "720h"}]}, now) == \
        {"30d-less-1s", "today"}
    assert await members(sessions, {"all": [{**created, "op": "eq", "value": date(2026, 3, 10)}]}, now) == {"today"}
    assert await members(sessions, {"all": [{**created, "op": "lte", "value": "2026-02-08"}]}, now) == \
        {"30d-ago", "30d-less-1s"}
    born = {"field": "traits.born"}
    assert await members(sessions, {"all": [{**born, "op": "eq", "value": date(1990, 5, 1)}]}, now) == \
        {"30d-ago", "30d-less-1s"}
    assert await members(sessions, {"all": [{**born, "op": "older_than", "value": "3650d"}]}, now) == \
        {"30d-ago", "30d-less-1s"}
    assert await members(sessions, {"not": {**born, "op": "lt", "value": date(2000, 1, 1)}}, now) == {"today"}


async def test_the_old_flat_rules_still_work(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profile(sessions, external_id="fa", locale="fa_IR")
    await add_profile(sessions, external_id="de", locale="de")
    assert await members(sessions, {"rules": [{"field": "language", "op": "in", "value": ["en", "fa", "th"]}]}) == \
        {"fa"}
