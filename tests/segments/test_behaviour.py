"""Events, metrics, RFM, reachable and named segments: the compiled audience selects exactly
whom the plain evaluator selects, on SQLite and PostgreSQL, for random profiles with random
events, orders and responses, at instants around DST changes and year ends, in several time
zones (one zoneinfo does not know, which counts as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.feedback.models import Response
from ecrm.orders.models import Order
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.push.models import PushSubscription
from ecrm.segments.compile import compile_audience
from ecrm.segments.rankings import ranked
from ecrm.segments.rules import Audience, ConsentPolicy, Rule
from ecrm.types import ChannelKind
from tests.segments.evaluator import matches
from tests.segments.test_rule_tree import DAYS, DURATION, LEAF, NUMBER, TEXT, TRAIT_VALUE, _ops, _pair

NOWS = st.sampled_from([
    datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 7, 30, tzinfo=UTC),     # New York springs forward at 07:00 UTC
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),    # Berlin springs forward at 01:00 UTC
    datetime(2026, 4, 5, 2, 30, tzinfo=UTC),     # Santiago and Lord Howe fall back
    datetime(2026, 11, 1, 5, 30, tzinfo=UTC),    # New York falls back at 06:00 UTC
    datetime(2026, 12, 31, 21, 0, tzinfo=UTC),   # already 2027 in Tehran, Bangkok, Chatham
    datetime(2026, 3, 31, 20, 45, tzinfo=UTC),   # already April in Tehran
    datetime(2026, 6, 15, 12, 0, tzinfo=UTC),
])
ZONES = st.sampled_from(["UTC", "Asia/Tehran", "Asia/Bangkok", "America/New_York", "Europe/Berlin",
                         "Pacific/Chatham", "America/Santiago", "Australia/Lord_Howe", "Mars/Olympus_Mons"])
HOUR, DAY = 3600, 86400
AGO = st.one_of(st.sampled_from([-HOUR, 0, 1, HOUR, 2 * HOUR - 1, 2 * HOUR, 2 * HOUR + 1, DAY, 3 * DAY]),
                st.integers(-HOUR, 400 * DAY))
EVENT_NAMES = ("cart_updated", "order_placed", "opened", "clicked")
EVENT = st.fixed_dictionaries({
    "name": st.sampled_from(EVENT_NAMES),
    "ago": AGO,
    "properties": st.dictionaries(st.sampled_from(["total", "city"]), TRAIT_VALUE, max_size=2),
})
ORDER = st.fixed_dictionaries({
    "status": st.sampled_from(["placed", "paid", "fulfilled", "cancelled", "refunded"]),
    "currency": st.sampled_from(["EUR", "USD", "IRR", "THB"]),
    "total_e4": st.sampled_from([0, 10_000, 50_000, 1_000_000]) | st.integers(0, 10**9),
    "ago": AGO,
})
RESPONSE = st.fixed_dictionaries({"kind": st.sampled_from(["opened", "clicked", "replied", "unsubscribed"]),
                                  "ago": AGO})
CONSENT = st.sampled_from(["granted", "withdrawn"])
PROFILE = st.fixed_dictionaries({
    "locale": st.sampled_from(["en", "fa", "th"]),
    "time_zone": ZONES,
    "email": st.sampled_from([None, "x@example.com"]),
    "phone": st.sampled_from([None, "+989120000000"]),
    "phone_invalid": st.sampled_from([None, "unknown number"]),
    "traits": st.dictionaries(st.sampled_from(["city", "points"]), TRAIT_VALUE, max_size=2),
    "consents": st.dictionaries(st.sampled_from(["email", "sms", "push"]), CONSENT, max_size=3),
    "push": st.booleans(),
    "events": st.lists(EVENT, max_size=5),
    "orders": st.lists(ORDER, max_size=4),
    "responses": st.lists(RESPONSE, max_size=2),
})

RATES = {"EUR": "1", "USD": "0.92", "IRR": "0.000024", "THB": "0.026"}
MONEY = st.one_of(st.fixed_dictionaries({"currency": st.sampled_from(["EUR", "IRR", "THB"])}),
                  st.just({"rates": RATES}))
TIME = st.one_of(st.sampled_from(["today", "this_week", "this_month", "this_year"]).map(lambda w: {"window": w}),
                 (st.sampled_from(["1h", "2h", "1d", "3d", "30d"]) | DURATION).map(lambda d: {"within": d}),
                 _pair(DAYS).map(lambda pair: {"between": pair}),
                 st.just({}))
WHERE = st.lists(st.builds(lambda key, test: {"field": f"properties.{key}", **test}, st.sampled_from(["total", "city"]),
                           st.one_of(_ops(NUMBER, ("eq", "gt", "lte")), _ops(TEXT.filter(bool), ("eq", "starts_with")),
                                     st.fixed_dictionaries({"op": st.sampled_from(["exists", "not_exists"])}))),
                 max_size=2)
COUNT = st.one_of(st.just({}), st.builds(lambda op, n: {"count": {op: n}},
                                         st.sampled_from(["gte", "gt", "lte", "lt", "eq"]), st.integers(0, 3)))
EVENT_RULE = st.one_of(
    st.builds(lambda name, period, count, where: {"event": name, **period, **count,
                                                  **({"where": where} if where else {})},
              st.sampled_from(EVENT_NAMES), TIME, COUNT, WHERE),
    st.builds(lambda a, b, gap: {"event": a, "then_not": b, "within": gap},
              st.sampled_from(EVENT_NAMES), st.sampled_from(EVENT_NAMES),
              st.sampled_from(["0s", "1h", "2h", "3d"])),
)
SMALL = st.integers(0, 4) | st.sampled_from([1.5, 0.5])
DAYS_VALUE = st.integers(0, 400) | st.sampled_from([1.5, 30.5])
AMOUNT = st.integers(0, 200) | st.sampled_from([5, 100, 12.34, 0.0001, 20_000])
TIME_TESTS = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(["older_than", "newer_than"]), "value": DURATION}),
    st.fixed_dictionaries({"op": st.sampled_from(["eq", "gt", "lte"]), "value": DAYS}),
    st.fixed_dictionaries({"op": st.sampled_from(["exists", "not_exists"])}),
)
NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")


NOTHING: st.SearchStrategy[dict[str, Any]] = st.just({})


def _metric(name: str, tests: st.SearchStrategy[dict[str, Any]], extra: st.SearchStrategy[dict[str, Any]] = NOTHING,
            ) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda test, more, period: {"metric": name, **test, **more, **period}, tests, extra, TIME)


def _numbers(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.fixed_dictionaries({"op": st.sampled_from(NUMBER_OPS), "value": values}),
                     st.fixed_dictionaries({"op": st.just("between"), "value": _pair(values)}),
                     st.fixed_dictionaries({"op": st.sampled_from(["exists", "not_exists"])}))


METRIC_RULE = st.one_of(
    _metric("orders_count", _numbers(SMALL)),
    _metric("total_spent", _numbers(AMOUNT), MONEY),
    _metric("average_order_value", _numbers(AMOUNT), MONEY),
    _metric("first_order_at", TIME_TESTS), _metric("last_order_at", TIME_TESTS),
    _metric("days_since_last_order", _numbers(DAYS_VALUE)),
    _metric("days_since_last_engagement", _numbers(DAYS_VALUE)),
    _metric("recency", _ops(st.integers(1, 5), ("eq", "gte", "lt"))),
    _metric("frequency", _ops(st.integers(1, 5), ("eq", "gte", "lt"))),
    _metric("monetary", _ops(st.integers(1, 5), ("eq", "gte", "lt")), MONEY),
    _metric("rfm", _ops(st.sampled_from(["5-5-5", "1-1-1", "3-2-1", "5-4-5"]), ("eq", "ne")), MONEY),
)
REACHABLE_RULE = st.sampled_from(["email", "sms", "push"]).map(lambda channel: {"reachable": channel})
BEHAVIOUR = st.one_of(EVENT_RULE, METRIC_RULE, REACHABLE_RULE, LEAF)
TREE = st.recursive(BEHAVIOUR, lambda children: st.one_of(
    st.lists(children, max_size=3).map(lambda rules: {"all": rules}),
    st.lists(children, max_size=3).map(lambda rules: {"any": rules}),
    children.map(lambda rule: {"not": rule}),
    children.map(lambda rule: {"segment": "named", "definition": rule}),
), max_leaves=6)


def at(now: datetime, ago: int) -> datetime:
    return now - timedelta(seconds=ago)


async def store(sessions: async_sessionmaker[AsyncSession], profiles: list[dict[str, Any]], now: datetime) -> None:
    """Replace every profile by `profiles`, in order (ids ascending), with what they did."""
    async with sessions.begin() as session:
        await session.execute(delete(Profile))
        for i, p in enumerate(profiles):
            row = Profile(external_id=f"p{i}", email=p["email"], phone=p["phone"], phone_invalid=p["phone_invalid"],
                          locale=p["locale"], time_zone=p["time_zone"], traits=p["traits"], created_at=now,
                          updated_at=now)
            session.add(row)
            await session.flush()
            session.add_all(Consent(profile_id=row.id, channel=channel, state=state, source="test", updated_at=now)
                            for channel, state in p["consents"].items())
            session.add_all(Event(profile_id=row.id, name=e["name"], properties=e["properties"],
                                  occurred_at=at(now, e["ago"]), received_at=now) for e in p["events"])
            session.add_all(Order(order_id=f"o{i}-{j}", profile_id=row.id, status=o["status"], total_e4=o["total_e4"],
                                  currency=o["currency"], placed_at=at(now, o["ago"]), line_items=[], created_at=now,
                                  updated_at=now) for j, o in enumerate(p["orders"]))
            session.add_all(Response(profile_id=row.id, kind=r["kind"], occurred_at=at(now, r["ago"]))
                            for r in p["responses"])
            if p["push"]:
                session.add(PushSubscription(profile_id=row.id, endpoint=f"https://push.example/{i}", p256dh="k",
                                             auth="a", created_at=now))


def as_lived(profile: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The profile as the evaluator reads it: times instead of ages."""
    return {**profile, "first_name": None, "last_name": None, "created_at": now,
            "events": [{**e, "occurred_at": at(now, e["ago"])} for e in profile["events"]],
            "orders": [{**o, "placed_at": at(now, o["ago"])} for o in profile["orders"]],
            "responses": [{**r, "occurred_at": at(now, r["ago"])} for r in profile["responses"]]}


async def selected(sessions: async_sessionmaker[AsyncSession], rule: Rule, now: datetime) -> set[str]:
    """Whom the compiled rule selects; RFM rules both ranked in the query and read from a stored
    ranking (`ecrm.segments.rankings`), which must agree."""
    audience = Audience(all_=[rule], consent=ConsentPolicy.IGNORE)
    stored = await ranked(sessions, audience, now, timedelta(0))
    async with sessions() as session:
        ids = (await session.scalars(compile_audience(audience, ChannelKind.EMAIL, now))).all()
        from_ranking = (await session.scalars(compile_audience(stored, ChannelKind.EMAIL, now))).all()
        assert sorted(from_ranking) == sorted(ids)
        return set(await session.scalars(select(Profile.external_id).where(Profile.id.in_(ids))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(profiles=st.lists(PROFILE, max_size=7), tree=TREE, now=NOWS)
async def test_events_metrics_and_reach_select_whom_the_evaluator_selects(
    sessions: async_sessionmaker[AsyncSession], profiles: list[dict[str, Any]], tree: dict[str, Any], now: datetime
) -> None:
    await store(sessions, profiles, now)
    rule = Rule.model_validate(tree)
    lived = [as_lived(p, now) for p in profiles]
    expected = {f"p{i}" for i, p in enumerate(lived) if p["email"] is not None and matches(rule, p, now, lived)}
    event(f"selected {'none' if not expected else 'all' if len(expected) == len(profiles) else 'some'}")
    assert await selected(sessions, rule, now) == expected


