"""Events, metrics, RFM and reachable one case at a time, on SQLite and PostgreSQL: the exact
edges of durations and sequences, calendar windows in the profile's zone across DST, money per
currency and converted, an event that never happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.feedback.models import Response
from ecrm.orders.models import Order
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.segments.compile import compile_audience
from ecrm.segments.rules import Audience
from ecrm.types import ChannelKind
from tests.factories import add_profile

NOW = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 in New York, half an hour after clocks sprang forward
H = timedelta(hours=1)
RATES = {"EUR": "1", "USD": "0.5", "IRR": "0.000024"}


async def members(sessions: async_sessionmaker[AsyncSession], rule: dict[str, Any], now: datetime = NOW) -> set[str]:
    audience = Audience.model_validate({"all": [rule], "consent": "ignore"})
    async with sessions() as session:
        ids = (await session.scalars(compile_audience(audience, ChannelKind.EMAIL, now))).all()
        return set(await session.scalars(select(Profile.external_id).where(Profile.id.in_(ids))))


async def did(sessions: async_sessionmaker[AsyncSession], external_id: str, *events: tuple[str, datetime],
              time_zone: str = "UTC", properties: dict[str, Any] | None = None) -> int:
    pid = await add_profile(sessions, external_id=external_id, time_zone=time_zone)
    async with sessions.begin() as session:
        session.add_all(Event(profile_id=pid, name=name, properties=properties or {}, occurred_at=when,
                              received_at=when) for name, when in events)
    return pid


async def ordered(sessions: async_sessionmaker[AsyncSession], external_id: str,
                  *orders: tuple[str, str, datetime] | tuple[str, str, datetime, str]) -> int:
    """Orders as (total, currency, placed_at[, status]); the total a decimal string."""
    pid = await add_profile(sessions, external_id=external_id)
    async with sessions.begin() as session:
        for i, (total, currency, placed, *status) in enumerate(orders):
            session.add(Order(order_id=f"{external_id}-{i}", profile_id=pid, status=(status or ["paid"])[0],
                              total_e4=int(float(total) * 10_000), currency=currency, placed_at=placed,
                              line_items=[], created_at=placed, updated_at=placed))
    return pid


async def test_within_is_exact_and_excludes_the_future(sessions: async_sessionmaker[AsyncSession]) -> None:
    await did(sessions, "2h-ago", ("cart_updated", NOW - 2 * H))
    await did(sessions, "2h-less-1s", ("cart_updated", NOW - 2 * H + timedelta(seconds=1)))
    await did(sessions, "now", ("cart_updated", NOW))
    await did(sessions, "in-1s", ("cart_updated", NOW + timedelta(seconds=1)))
    await did(sessions, "never")
    assert await members(sessions, {"event": "cart_updated", "within": "2h"}) == {"2h-less-1s", "now"}
    assert await members(sessions, {"not": {"event": "cart_updated", "within": "2h"}}) == \
        {"2h-ago", "in-1s", "never"}
    assert await members(sessions, {"event": "cart_updated"}) == {"2h-ago", "2h-less-1s", "now", "in-1s"}


async def test_an_event_that_never_happened(sessions: async_sessionmaker[AsyncSession]) -> None:
    await did(sessions, "carted", ("cart_updated", NOW - H))
    await did(sessions, "nothing")
    assert await members(sessions, {"event": "wishlist_added"}) == set()
    assert await members(sessions, {"not": {"event": "wishlist_added"}}) == {"carted", "nothing"}
    assert await members(sessions, {"event": "wishlist_added", "count": {"eq": 0}}) == {"carted", "nothing"}
    assert await members(sessions, {"event": "cart_updated", "count": {"lt": 1}}) == {"nothing"}


async def test_counts_and_where_on_properties(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def carts(external_id: str, *totals: Any) -> None:
        pid = await add_profile(sessions, external_id=external_id)
        async with sessions.begin() as session:
            session.add_all(Event(profile_id=pid, name="cart_updated", properties={"total": t, "city": "تهران"},
                                  occurred_at=NOW - H, received_at=NOW) for t in totals)

    await carts("two-big", 150, "300")          # a number kept as text compares as a number
    await carts("one-big", 150, 50)
    await carts("words", "many", "۱۵۰")         # Persian digits are text, not a number
    big = [{"field": "properties.total", "op": "gt", "value": 100}]
    assert await members(sessions, {"event": "cart_updated", "where": big}) == {"two-big", "one-big"}
    assert await members(sessions, {"event": "cart_updated", "where": big, "count": {"gte": 2}}) == {"two-big"}
    assert await members(sessions, {"event": "cart_updated", "where": big, "count": {"eq": 1}}) == {"one-big"}
    assert await members(sessions, {"event": "cart_updated", "where": big, "count": {"lte": 1}}) == \
        {"one-big", "words"}
    city = [{"field": "properties.city", "op": "starts_with", "value": "تهر"}]
    assert await members(sessions, {"event": "cart_updated", "where": city, "count": {"gte": 2}}) == \
        {"two-big", "one-big", "words"}
    thai = [{"field": "properties.city", "op": "eq", "value": "กรุงเทพ"}]
    assert await members(sessions, {"event": "cart_updated", "where": thai}) == set()


async def test_then_not_holds_for_an_old_enough_a_not_followed_within_the_gap(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    cart, order = "cart_updated", "order_placed"
    await did(sessions, "abandoned", (cart, NOW - 3 * H))
    await did(sessions, "bought-1h-later", (cart, NOW - 3 * H), (order, NOW - 2 * H))
    await did(sessions, "bought-at-2h", (cart, NOW - 5 * H), (order, NOW - 3 * H))
    await did(sessions, "bought-too-late", (cart, NOW - 5 * H), (order, NOW - 3 * H + timedelta(seconds=1)))
    await did(sessions, "bought-before", (order, NOW - 4 * H), (cart, NOW - 3 * H))
    await did(sessions, "too-recent", (cart, NOW - 2 * H + timedelta(seconds=1)))
    await did(sessions, "exactly-2h", (cart, NOW - 2 * H))
    await did(sessions, "two-carts-one-bought", (cart, NOW - 6 * H), (order, NOW - 5 * H), (cart, NOW - 3 * H))
    await did(sessions, "never")
    assert await members(sessions, {"event": cart, "then_not": order, "within": "2h"}) == \
        {"abandoned", "bought-too-late", "bought-before", "exactly-2h", "two-carts-one-bought"}


async def test_calendar_windows_are_taken_in_the_profiles_zone_across_dst(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    # 2026-03-08 07:30 UTC: 03:30 EDT in New York (today began at 05:00 UTC, in EST), 11:00 in
    # Tehran (began 2026-03-07 20:30 UTC), 14:30 in Bangkok (began 17:00 UTC the day before).
    for zone in ("America/New_York", "Asia/Tehran", "Asia/Bangkok", "UTC", "Nowhere/Unknown"):
        for label, when in (("ny-start", datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),
                            ("ny-before", datetime(2026, 3, 8, 4, 59, 59, tzinfo=UTC)),
                            ("tehran-start", datetime(2026, 3, 7, 20, 30, tzinfo=UTC)),
                            ("bangkok-start", datetime(2026, 3, 7, 17, 0, tzinfo=UTC)),
                            ("utc-start", datetime(2026, 3, 8, 0, 0, tzinfo=UTC))):
            await did(sessions, f"{zone}:{label}", ("visited", when), time_zone=zone)
    assert await members(sessions, {"event": "visited", "window": "today"}) == {
        "America/New_York:ny-start",
        "Asia/Tehran:ny-start", "Asia/Tehran:ny-before", "Asia/Tehran:tehran-start", "Asia/Tehran:utc-start",
        "Asia/Bangkok:ny-start", "Asia/Bangkok:ny-before", "Asia/Bangkok:tehran-start",
        "Asia/Bangkok:bangkok-start", "Asia/Bangkok:utc-start",
        "UTC:ny-start", "UTC:ny-before", "UTC:utc-start",
        "Nowhere/Unknown:ny-start", "Nowhere/Unknown:ny-before", "Nowhere/Unknown:utc-start",
    }


async def test_a_day_whose_midnight_is_skipped_starts_when_the_clocks_jump(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime(2026, 9, 6, 15, 0, tzinfo=UTC)  # Santiago skipped 00:00-01:00 local on 2026-09-06
    await did(sessions, "day-start", ("visited", datetime(2026, 9, 6, 4, 0, tzinfo=UTC)), time_zone="America/Santiago")
    await did(sessions, "yesterday", ("visited", datetime(2026, 9, 6, 3, 59, 59, tzinfo=UTC)),
              time_zone="America/Santiago")
    assert await members(sessions, {"event": "visited", "window": "today"}, now) == {"day-start"}
    assert await members(sessions, {"event": "visited", "window": "this_week"}, now) == {"day-start", "yesterday"}


async def test_this_year_turns_at_each_zones_new_year(sessions: async_sessionmaker[AsyncSession]) -> None:
    now = datetime(2026, 12, 31, 21, 0, tzinfo=UTC)  # 00:30 on 2027-01-01 in Tehran
    for zone in ("Asia/Tehran", "UTC"):
        await did(sessions, zone, ("ordered", datetime(2026, 12, 31, 20, 0, tzinfo=UTC)), time_zone=zone)
    assert await members(sessions, {"event": "ordered", "window": "this_year"}, now) == {"UTC"}
    assert await members(sessions, {"event": "ordered", "window": "this_month"}, now) == {"UTC"}


async def test_money_is_per_currency_or_converted_exactly(sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    await ordered(sessions, "irr-rich", ("3000000", "IRR", NOW - day), ("2000001", "IRR", NOW - 2 * day))
    await ordered(sessions, "irr-exact", ("5000000", "IRR", NOW - day))
    await ordered(sessions, "irr-cancelled", ("9000000", "IRR", NOW - day, "cancelled"))
    await ordered(sessions, "eur", ("100.50", "EUR", NOW - day), ("0.01", "USD", NOW - day))
    await ordered(sessions, "mixed", ("100", "USD", NOW - day), ("200", "GBP", NOW - day))
    await add_profile(sessions, external_id="none")
    irr = {"metric": "total_spent", "currency": "IRR", "op": "gt", "value": 5000000}
    assert await members(sessions, irr) == {"irr-rich"}
    assert await members(sessions, {**irr, "op": "lte"}) == {"irr-exact", "irr-cancelled", "eur", "mixed", "none"}
    converted = {"metric": "total_spent", "rates": RATES, "op": "eq"}
    assert await members(sessions, {**converted, "value": 100.505}) == {"eur"}
    assert await members(sessions, {**converted, "value": 50}) == {"mixed"}  # GBP has no rate: left out
    assert await members(sessions, {**converted, "value": 120}) == {"irr-exact"}
    assert await members(sessions, {**converted, "value": 120.000024}) == {"irr-rich"}
    assert await members(sessions, {**converted, "value": 0}) == {"irr-cancelled", "none"}
    average = {"metric": "average_order_value", "rates": RATES}
    assert await members(sessions, {**average, "op": "eq", "value": 50.2525}) == {"eur"}
    assert await members(sessions, {**average, "op": "not_exists"}) == {"irr-cancelled", "none"}
    assert await members(sessions, {"metric": "orders_count", "op": "lt", "value": 2}) == \
        {"irr-exact", "irr-cancelled", "none"}


async def test_days_since_counts_whole_days_and_missing_fails(sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    await ordered(sessions, "90d", ("1", "EUR", NOW - 90 * day))
    await ordered(sessions, "90d-less-1s", ("1", "EUR", NOW - 90 * day + timedelta(seconds=1)))
    await ordered(sessions, "91d-less-1s", ("1", "EUR", NOW - 91 * day + timedelta(seconds=1)))
    await add_profile(sessions, external_id="never")
    last = {"metric": "days_since_last_order"}
    assert await members(sessions, {**last, "op": "gte", "value": 90}) == {"90d", "91d-less-1s"}
    assert await members(sessions, {**last, "op": "eq", "value": 90}) == {"90d", "91d-less-1s"}
    assert await members(sessions, {**last, "op": "lt", "value": 90}) == {"90d-less-1s"}
    assert await members(sessions, {**last, "op": "ne", "value": 90}) == {"90d-less-1s"}
    assert await members(sessions, {"not": {**last, "op": "ne", "value": 90}}) == {"90d", "91d-less-1s", "never"}
    lapsed = {"all": [{"metric": "orders_count", "op": "gte", "value": 2},
                      {"metric": "last_order_at", "op": "older_than", "value": "90d"}]}
    assert await members(sessions, lapsed) == set()



async def test_sibling_order_metrics_are_one_grouping_with_the_same_answer(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    await ordered(sessions, "lapsed", ("5", "EUR", NOW - 200 * day), ("7", "EUR", NOW - 100 * day))
    await ordered(sessions, "lapsed-usd", ("5", "USD", NOW - 200 * day), ("7", "USD", NOW - 100 * day))
    await ordered(sessions, "recent", ("5", "EUR", NOW - 200 * day), ("7", "EUR", NOW - 10 * day))
    await ordered(sessions, "once", ("50", "EUR", NOW - 100 * day))
    await ordered(sessions, "cancelled", ("5", "EUR", NOW - 200 * day), ("7", "EUR", NOW - 100 * day, "cancelled"))
    await add_profile(sessions, external_id="never")
    twice = {"metric": "orders_count", "op": "gte", "value": 2}
    quiet = {"metric": "days_since_last_order", "op": "gt", "value": 90}
    big = {"metric": "total_spent", "currency": "EUR", "op": "gte", "value": 12}
    assert await members(sessions, {"all": [twice, quiet]}) == {"lapsed", "lapsed-usd"}
    assert await members(sessions, {"any": [twice, quiet]}) == {"lapsed", "lapsed-usd", "recent", "once", "cancelled"}
    assert await members(sessions, {"not": {"all": [twice, quiet]}}) == {"recent", "once", "cancelled", "never"}
    # a currency (or period) of its own is another set of orders: not joined with the others
    assert await members(sessions, {"all": [twice, quiet, big]}) == {"lapsed"}
    either = {"any": [big, {"all": [twice, quiet]}]}
    assert await members(sessions, either) == {"lapsed", "lapsed-usd", "recent", "once"}
    audience = Audience.model_validate({"all": [twice, quiet, big], "consent": "ignore"})
    sql = str(compile_audience(audience, ChannelKind.EMAIL, NOW).compile(dialect=sqlite.dialect()))
    assert sql.count("GROUP BY") == 2  # the two rules over all orders share one; the EUR one has its own


async def test_engagement_reads_responses_and_events(sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    pid = await add_profile(sessions, external_id="opened-10d")
    async with sessions.begin() as session:
        session.add(Response(profile_id=pid, kind="opened", occurred_at=NOW - 10 * day))
        session.add(Response(profile_id=pid, kind="unsubscribed", occurred_at=NOW - day))
    await did(sessions, "clicked-2d", ("clicked", NOW - 2 * day), ("visited", NOW))
    await did(sessions, "visited-only", ("visited", NOW))
    engaged = {"metric": "days_since_last_engagement"}
    assert await members(sessions, {**engaged, "op": "lte", "value": 7}) == {"clicked-2d"}
    assert await members(sessions, {**engaged, "op": "gt", "value": 7}) == {"opened-10d"}
    assert await members(sessions, {**engaged, "op": "not_exists"}) == {"visited-only"}


async def test_rfm_quintiles_over_profiles_with_orders(sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    for n in range(1, 11):  # p1 ordered once long ago, cheaply ... p10 ten times lately, for a lot
        await ordered(sessions, f"p{n}", *((str(n * 10), "EUR", NOW - (11 - n) * day) for _ in range(n)))
    await add_profile(sessions, external_id="never")
    rfm = {"metric": "rfm", "currency": "EUR"}
    assert await members(sessions, {**rfm, "op": "eq", "value": "5-5-5"}) == {"p9", "p10"}
    assert await members(sessions, {**rfm, "op": "in", "value": ["1-1-1", "3-3-3"]}) == {"p1", "p2", "p5", "p6"}
    assert await members(sessions, {**rfm, "op": "ne", "value": "5-5-5"}) == {f"p{n}" for n in range(1, 9)}
    assert await members(sessions, {"metric": "frequency", "op": "gte", "value": 4}) == {"p7", "p8", "p9", "p10"}
    assert await members(sessions, {"not": {"metric": "recency", "op": "gte", "value": 2}}) == {"p1", "p2", "never"}


async def test_reachable_needs_an_address_that_works_and_consent(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_profile(sessions, external_id="sms-ok", phone="+66811111111")
    await add_profile(sessions, external_id="sms-invalid", phone="+66822222222", phone_invalid="unknown number")
    await add_profile(sessions, external_id="no-phone")
    async with sessions.begin() as session:
        for profile in (await session.scalars(select(Profile))).all():
            session.add(Consent(profile_id=profile.id, channel="sms", state="granted", source="t", updated_at=NOW))
    await add_profile(sessions, external_id="sms-no-consent", phone="+66833333333")
    assert await members(sessions, {"reachable": "sms"}) == {"sms-ok"}
    assert await members(sessions, {"reachable": "email"}) == {"sms-ok", "sms-invalid", "no-phone", "sms-no-consent"}
    assert await members(sessions, {"reachable": "push"}) == set()


async def test_extreme_periods_and_values_compile_and_run(sessions: async_sessionmaker[AsyncSession]) -> None:
    await did(sessions, "carted", ("cart_updated", NOW - H))
    widest = {"event": "cart_updated", "between": ["0001-01-01", "9999-12-31"], "count": {"lt": 1_000_000_000}}
    assert await members(sessions, widest) == {"carted"}
    assert await members(sessions, {"metric": "first_order_at", "op": "between",
                                    "value": ["0001-01-01", "9999-12-31"]}) == set()
    assert await members(sessions, {"metric": "days_since_last_engagement", "op": "lt", "value": -36500}) == set()
    assert await members(sessions, {"metric": "total_spent", "currency": "IRR", "op": "lt", "value": 1e15}) == \
        {"carted"}


async def test_a_sequence_of_one_event_name_needs_another_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    await did(sessions, "viewed-once", ("viewed", NOW - 3 * H))
    await did(sessions, "viewed-again", ("viewed", NOW - 3 * H), ("viewed", NOW - 2 * H + timedelta(seconds=1)))
    assert await members(sessions, {"event": "viewed", "then_not": "viewed", "within": "2h"}) == {"viewed-once"}
