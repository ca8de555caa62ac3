"""POST /webhooks/shopify and /webhooks/woocommerce on both databases: signed payloads shaped
as the shops send them become profiles (with consent), orders and cart events; a wrong or
missing signature, a replay, malformed bodies and WooCommerce's ping each tested."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.orders.models import Order
from ecrm.profiles.consent import load_consents
from ecrm.profiles.ingest import find_profile
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.shops.models import ReceivedWebhook
from tests.factories import add_profile
from tests.shops.conftest import Client, mapped
from tests.shops.payloads import (
    CUSTOMER_ID,
    ORDER_ID,
    shopify_checkout,
    shopify_customer,
    shopify_order,
    shopify_redact,
    shopify_request,
    woo_customer,
    woo_order,
    woo_request,
)

Sessions = async_sessionmaker[AsyncSession]
SHOPIFY_PROFILE = f"shopify:{CUSTOMER_ID}"


async def count(sessions: Sessions, table: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def nothing_stored(sessions: Sessions) -> bool:
    counts = [await count(sessions, t) for t in (ReceivedWebhook, Profile, Order, Event, Consent)]
    return counts == [0, 0, 0, 0, 0]


async def webhooks(sessions: Sessions) -> list[ReceivedWebhook]:
    async with sessions() as session:
        return list(await session.scalars(select(ReceivedWebhook).order_by(ReceivedWebhook.id)))


async def post(client: Client, provider: str, request: tuple[bytes, dict[str, str]]) -> Any:
    body, headers = request
    return await client.post(f"/webhooks/{provider}", data=io.BytesIO(body), headers=headers)


async def test_a_shopify_order_becomes_a_profile_with_consent_and_an_order(shop_api: Client,
                                                                          sessions: Sessions) -> None:
    response = await post(shop_api, "shopify", shopify_request("orders/create", shopify_order()))
    assert response.status == 200, await response.text()
    await mapped(shop_api)
    async with sessions() as session:
        profile = await find_profile(session, SHOPIFY_PROFILE)
        assert profile is not None
        assert (profile.email, profile.phone, profile.first_name, profile.locale) == (
            "john@example.com", "+66812345678", "John", "th")
        assert [(c.channel, c.state, c.source) for c in await load_consents(session, profile.id)] == [
            ("email", "granted", "shopify")]
        order = await session.scalar(select(Order))
    assert order is not None
    assert (order.order_id, order.profile_id, order.status, order.total_e4, order.currency) == (
        f"shopify:{ORDER_ID}", profile.id, "placed", 17_800_000, "THB")
    assert order.line_items == [{"sku": "SKU2006-001", "name": "Aviator sunglasses", "quantity": 2,
                                 "unit_price": "890.00"}]
    [row] = await webhooks(sessions)
    assert (row.provider, row.topic, row.shop, row.status, row.body, row.attempts) == (
        "shopify", "orders/create", "ecrm-test.myshopify.com", "mapped", None, 1)


async def test_paid_and_fulfilled_move_the_order_forward_and_a_late_create_does_not_move_it_back(
        shop_api: Client, sessions: Sessions) -> None:
    await post(shop_api, "shopify", shopify_request("orders/paid", shopify_order("paid"), "w-paid"))
    await mapped(shop_api)
    await post(shop_api, "shopify", shopify_request("orders/create", shopify_order(), "w-create"))
    await mapped(shop_api)
    async with sessions() as session:
        assert await session.scalar(select(Order.status)) == "paid"
    fulfilled = shopify_order("paid", fulfillment_status="fulfilled")
    await post(shop_api, "shopify", shopify_request("orders/fulfilled", fulfilled, "w-fulfilled"))
    await mapped(shop_api)
    async with sessions() as session:
        assert await session.scalar(select(Order.status)) == "fulfilled"
    assert [w.status for w in await webhooks(sessions)] == ["mapped"] * 3


async def test_checkouts_become_cart_events_with_cart_id_items_total_and_currency(shop_api: Client,
                                                                                 sessions: Sessions) -> None:
    await post(shop_api, "shopify", shopify_request("checkouts/create", shopify_checkout(), "w-1"))
    updated = shopify_checkout(total_price="2670.00", line_items=[shopify_checkout()["line_items"][0] | {
        "quantity": 3}])
    await post(shop_api, "shopify", shopify_request("checkouts/update", updated, "w-2"))
    await post(shop_api, "shopify", shopify_request(
        "checkouts/update", shopify_checkout(completed_at="2026-01-01T15:10:00+07:00"), "w-3"))
    await mapped(shop_api)
    async with sessions() as session:
        events = list(await session.scalars(select(Event).order_by(Event.id)))
    assert [e.name for e in events] == ["checkout_started", "cart_updated"]  # a completed checkout is an order
    assert events[1].properties == {
        "cart_id": "eeafa272cebfd4b22385bc4b645e762c", "checkout_id": "123123123", "total": "2670.00",
        "currency": "THB", "source": "shopify",
        "checkout_url": "https://ecrm-test.myshopify.com/checkouts/123123123/recover?key=example",
        "line_items": [{"sku": "SKU2006-001", "name": "Aviator sunglasses", "quantity": 3, "unit_price": "890.00"}]}
    assert events[0].occurred_at.isoformat() == "2026-01-01T08:05:00+00:00"


async def test_a_redelivery_is_recorded_once_and_answered_2xx(shop_api: Client, sessions: Sessions) -> None:
    request = shopify_request("checkouts/create", shopify_checkout(), "same-id")
    first = await post(shop_api, "shopify", request)
    await mapped(shop_api)
    again = await post(shop_api, "shopify", request)
    await mapped(shop_api)
    assert (first.status, again.status) == (200, 200)
    assert (await again.json())["duplicate"] is True
    assert (await count(sessions, ReceivedWebhook), await count(sessions, Event)) == (1, 1)


async def test_customers_update_withdraws_consent_and_redact_erases_the_profile(shop_api: Client,
                                                                               sessions: Sessions) -> None:
    await post(shop_api, "shopify", shopify_request("customers/create", shopify_customer(), "w-1"))
    await mapped(shop_api)
    await post(shop_api, "shopify", shopify_request("customers/update", shopify_customer(
        "unsubscribed", sms_marketing_consent={"state": "subscribed", "opt_in_level": "single_opt_in"}), "w-2"))
    await mapped(shop_api)
    async with sessions() as session:
        profile = await find_profile(session, SHOPIFY_PROFILE)
        assert profile is not None
        assert [(c.channel, c.state) for c in await load_consents(session, profile.id)] == [
            ("email", "withdrawn"), ("sms", "granted")]
    await post(shop_api, "shopify", shopify_request("orders/create", shopify_order(), "w-3"))
    await post(shop_api, "shopify", shopify_request("customers/redact", shopify_redact(), "w-4"))
    await mapped(shop_api)
    assert (await count(sessions, Profile), await count(sessions, Order), await count(sessions, Consent)) == (0, 0, 0)
    assert all(w.body is None for w in await webhooks(sessions))  # no copy of the customer's data stays


async def test_a_customer_without_valid_phone_or_locale_keeps_the_rest(shop_api: Client, sessions: Sessions) -> None:
    customer = shopify_customer(phone="12", email="not an email")
    order = shopify_order(customer=customer, customer_locale="xx-nowhere", email="john@example.com")
    await post(shop_api, "shopify", shopify_request("orders/create", order))
    await mapped(shop_api)
    async with sessions() as session:
        profile = await find_profile(session, SHOPIFY_PROFILE)
    assert profile is not None
    assert (profile.email, profile.phone, profile.first_name, profile.locale) == (None, None, "John", "en")
    assert await count(sessions, Order) == 1


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", "not base64!", None])
async def test_a_wrong_or_missing_signature_is_401_and_nothing_is_stored(shop_api: Client, sessions: Sessions,
                                                                         signature: str | None) -> None:
    body, headers = shopify_request("orders/create", shopify_order())
    if signature is None:
        del headers["X-Shopify-Hmac-Sha256"]
    else:
        headers["X-Shopify-Hmac-Sha256"] = signature
    response = await shop_api.post("/webhooks/shopify", data=body, headers=headers)
    assert response.status == 401
    assert "X-Shopify-Hmac-Sha256" in (await response.json())["error"]
    woo_body, woo_headers = woo_request("order.created", woo_order())
    tampered = woo_body.replace(b'"35.00"', b'"0.01"')
    response = await shop_api.post("/webhooks/woocommerce", data=tampered, headers=woo_headers)
    assert response.status == 401
    assert await nothing_stored(sessions)


async def test_a_body_signed_with_another_secret_is_401(shop_api: Client, sessions: Sessions) -> None:
    response = await post(shop_api, "shopify", shopify_request("orders/create", shopify_order(), secret="other"))
    assert response.status == 401
    assert await nothing_stored(sessions)


@pytest.mark.parametrize(("body", "status", "says"), [
    (b'{"id": 1,', 400, "not valid JSON"),
    (b"\xff\xfe{}", 400, "not UTF-8"),
    (b"[1, 2]", 422, "JSON object"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, 422, "deeper"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, 400, "deeper"),
    (b'{"email": "\\ud800"}', 422, "surrogate"),
    (b'{"total": NaN}', 400, "NaN"),
    (b'{"id": 1}' + b" " * (2 * 1024 * 1024), 413, "larger"),
])
async def test_hostile_bodies_are_4xx_and_nothing_is_stored(shop_api: Client, sessions: Sessions, body: bytes,
                                                           status: int, says: str) -> None:
    response = await post(shop_api, "shopify", shopify_request("orders/create", body))
    assert response.status == status
    assert says in (await response.json())["error"]
    assert await nothing_stored(sessions)


async def test_a_charset_other_than_utf8_is_415(shop_api: Client, sessions: Sessions) -> None:
    body, headers = woo_request("order.created", json.dumps(woo_order()).encode("utf-16"))
    headers["Content-Type"] = "application/json; charset=utf-16"
    response = await shop_api.post("/webhooks/woocommerce", data=body, headers=headers)
    assert response.status == 415
    assert await nothing_stored(sessions)


async def test_missing_delivery_headers_are_400_naming_the_header(shop_api: Client, sessions: Sessions) -> None:
    body, headers = shopify_request("orders/create", shopify_order())
    del headers["X-Shopify-Webhook-Id"]
    response = await shop_api.post("/webhooks/shopify", data=body, headers=headers)
    assert (response.status, (await response.json())["field"]) == (400, "X-Shopify-Webhook-Id")
    assert await nothing_stored(sessions)


async def test_an_unknown_shop_is_404(shop_api: Client) -> None:
    response = await shop_api.post("/webhooks/magento", data=b"{}")
    assert response.status == 404
    assert "shopify, woocommerce" in (await response.json())["error"]


async def test_the_woocommerce_ping_gets_200_and_stores_nothing(shop_api: Client, sessions: Sessions) -> None:
    response = await shop_api.post("/webhooks/woocommerce", data=b"webhook_id=12", headers={
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "WooCommerce/9.4.0 Hookshot"})
    assert response.status == 200
    assert await nothing_stored(sessions)
    unsigned = await shop_api.post("/webhooks/woocommerce", data=b'{"webhook_id": 12}',
                                   headers={"Content-Type": "application/json"})
    assert unsigned.status == 401  # only the form ping goes unsigned
    assert await nothing_stored(sessions)


async def test_a_woocommerce_guest_order_and_a_customer(shop_api: Client, sessions: Sessions) -> None:
    assert (await post(shop_api, "woocommerce", woo_request("order.created", woo_order(), "d-1"))).status == 200
    assert (await post(shop_api, "woocommerce", woo_request("customer.created", woo_customer(), "d-2"))).status == 200
    await mapped(shop_api)
    async with sessions() as session:
        guest = await find_profile(session, "woocommerce:email:jane.doe@example.com")
        customer = await find_profile(session, "woocommerce:25")
        order = await session.scalar(select(Order))
        consents = await count(sessions, Consent)
    assert guest is not None and customer is not None and order is not None
    assert (guest.email, guest.phone, guest.first_name) == ("jane.doe@example.com", None, "Jane")  # (555) dropped
    assert (customer.email, customer.phone, customer.last_name) == ("john.doe@example.com", "+14155552671", "Doe")
    assert consents == 0  # WooCommerce reports no marketing consent
    assert (order.order_id, order.profile_id, order.status, order.total_e4, order.currency) == (
        "woocommerce:727", guest.id, "paid", 350_000, "EUR")
    assert order.placed_at.isoformat() == "2026-01-01T09:00:00+00:00"
    assert [(i["sku"], i["quantity"], i["unit_price"]) for i in order.line_items] == [
        ("WOO-1", 2, "3.00"), (None, 3, "8.33")]


async def test_a_woocommerce_update_completes_the_order_and_a_draft_is_a_checkout(shop_api: Client,
                                                                                 sessions: Sessions) -> None:
    await post(shop_api, "woocommerce", woo_request("order.created", woo_order("checkout-draft", 25, id=800), "d-0"))
    await post(shop_api, "woocommerce", woo_request("order.created", woo_order("pending", 25), "d-1"))
    await post(shop_api, "woocommerce", woo_request("order.updated", woo_order("completed", 25), "d-2"))
    await mapped(shop_api)
    async with sessions() as session:
        order = await session.scalar(select(Order))
        event = await session.scalar(select(Event))
        owner = await session.scalar(select(Profile.external_id).where(Profile.id == order.profile_id)) \
            if order else None
    assert order is not None and event is not None
    assert (order.status, owner) == ("fulfilled", "woocommerce:25")
    assert (event.name, event.properties["cart_id"], event.properties["total"]) == (
        "checkout_started", "woocommerce:800", "35.00")


async def test_unknown_topics_are_stored_and_mapped_to_nothing(shop_api: Client, sessions: Sessions) -> None:
    response = await post(shop_api, "shopify", shopify_request("products/update", {"id": 1, "title": "Hat"}))
    await mapped(shop_api)
    assert response.status == 200
    assert [w.status for w in await webhooks(sessions)] == ["mapped"]
    assert await count(sessions, Profile) == 0


async def test_a_stale_subscribed_from_the_shop_does_not_undo_a_later_unsubscribe(shop_api: Client,
                                                                                 sessions: Sessions) -> None:
    await add_profile(sessions, external_id=SHOPIFY_PROFILE, consent="withdrawn")  # unsubscribed here at 09:00 UTC
    stale = shopify_customer()  # Shopify's consent_updated_at: 02:00 UTC, before the unsubscribe
    await post(shop_api, "shopify", shopify_request("customers/update", stale, "w-1"))
    await post(shop_api, "shopify", shopify_request("orders/paid", shopify_order("paid", customer=shopify_customer(
        email_marketing_consent=None)), "w-2"))  # buyer_accepts_marketing as of the order: 09:00 UTC too
    await mapped(shop_api)
    assert await email_consent(sessions) == ("withdrawn", "test")
    fresh = shopify_customer(email_marketing_consent={"state": "subscribed", "opt_in_level": "confirmed_opt_in",
                                                      "consent_updated_at": "2026-01-01T10:00:00Z"})
    await post(shop_api, "shopify", shopify_request("customers/update", fresh, "w-3"))
    await mapped(shop_api)
    assert await email_consent(sessions) == ("granted", "shopify")


async def email_consent(sessions: Sessions) -> tuple[str, str]:
    async with sessions() as session:
        found = (await session.execute(select(Consent.state, Consent.source).where(Consent.channel == "email"))).one()
    return found.state, found.source
