"""Webhook deliveries shaped as Shopify and WooCommerce send them (fields, headers, signing),
after the samples in their documentation: Shopify's REST webhook payloads (ids beyond 2^53,
amounts as strings, times with an offset) and WooCommerce's v3 order and customer JSON
(amounts as strings but a line's `price` a number, `date_created_gmt` without a zone)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

SHOPIFY_SECRET = "shpss_test_0123456789abcdef0123456789abcdef"
WOO_SECRET = "woo-secret-0123456789-0123456789"
SHOP_DOMAIN = "ecrm-test.myshopify.com"
WOO_SOURCE = "https://woo.shop.example/"
CUSTOMER_ID = 115310627314723954
ORDER_ID = 820982911946154508


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()


def shopify_request(topic: str, payload: dict[str, Any] | bytes,
                    webhook_id: str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                    secret: str = SHOPIFY_SECRET) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Shop-Domain": SHOP_DOMAIN, "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-API-Version": "2025-07", "X-Shopify-Triggered-At": "2026-01-01T09:00:00.000000000Z",
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
    }


def woo_request(topic: str, payload: dict[str, Any] | bytes, delivery_id: str = "a7d0b3f0e2c1",
                secret: str = WOO_SECRET) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resource, event = topic.split(".")
    return body, {
        "Content-Type": "application/json", "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": WOO_SOURCE, "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event, "X-WC-Webhook-Signature": sign(secret, body), "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }


def shopify_customer(email_state: str = "subscribed", **overrides: Any) -> dict[str, Any]:
    return {
        "id": CUSTOMER_ID, "email": "John@Example.com", "created_at": "2026-01-01T09:00:00+07:00",
        "updated_at": "2026-01-01T09:00:00+07:00", "first_name": "John", "last_name": "Smith", "state": "enabled",
        "note": None, "verified_email": True, "multipass_identifier": None, "tax_exempt": False,
        "phone": "+66812345678",
        "email_marketing_consent": {"state": email_state, "opt_in_level": "single_opt_in",
                                    "consent_updated_at": "2026-01-01T09:00:00+07:00"},
        "sms_marketing_consent": None, "tags": "vip", "currency": "THB", "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{CUSTOMER_ID}",
        "default_address": {"id": 715243470612851245, "customer_id": CUSTOMER_ID, "first_name": None,
                            "last_name": None, "address1": "123 Sukhumvit Rd", "city": "Bangkok",
                            "country_code": "TH", "zip": "10110", "default": True},
        **overrides,
    }


def shopify_line_item(name: str = "Aviator sunglasses", price: str = "890.00", quantity: int = 1,
                      sku: str = "SKU2006-001") -> dict[str, Any]:
    return {
        "id": 866550311766439020, "admin_graphql_api_id": "gid://shopify/LineItem/866550311766439020",
        "fulfillable_quantity": quantity, "fulfillment_service": "manual", "fulfillment_status": None,
        "gift_card": False, "grams": 100, "name": name, "price": price,
        "price_set": {"shop_money": {"amount": price, "currency_code": "THB"},
                      "presentment_money": {"amount": price, "currency_code": "THB"}},
        "product_exists": True, "product_id": 788032119674292922, "properties": [], "quantity": quantity,
        "requires_shipping": True, "sku": sku, "taxable": True, "title": name, "total_discount": "0.00",
        "variant_id": 642667041472713922, "variant_title": None, "vendor": None, "tax_lines": [], "duties": [],
        "discount_allocations": [],
    }


def shopify_order(financial_status: str = "pending", **overrides: Any) -> dict[str, Any]:
    return {
        "id": ORDER_ID, "admin_graphql_api_id": f"gid://shopify/Order/{ORDER_ID}", "app_id": None,
        "browser_ip": None, "buyer_accepts_marketing": True, "cancel_reason": None, "cancelled_at": None,
        "cart_token": None, "checkout_id": None, "checkout_token": None, "confirmed": True,
        "contact_email": "john@example.com", "created_at": "2026-01-01T16:00:00+07:00", "currency": "THB",
        "current_subtotal_price": "1780.00", "current_total_price": "1780.00", "customer_locale": "th",
        "email": "john@example.com", "financial_status": financial_status, "fulfillment_status": None,
        "name": "#9999", "note": None, "number": 234, "order_number": 1234, "phone": None,
        "presentment_currency": "THB", "processed_at": "2026-01-01T16:00:00+07:00", "source_name": "web",
        "subtotal_price": "1780.00", "tags": "", "total_price": "1780.00", "total_tax": "0.00",
        "line_items": [shopify_line_item(quantity=2)], "customer": shopify_customer(), "refunds": [],
        "shipping_lines": [], **overrides,
    }


def shopify_checkout(**overrides: Any) -> dict[str, Any]:
    return {
        "id": 981820079255243537, "token": "123123123", "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
        "email": "john@example.com", "gateway": None, "buyer_accepts_marketing": False,
        "created_at": "2026-01-01T15:00:00+07:00", "updated_at": "2026-01-01T15:05:00+07:00",
        "landing_site": None, "note": None, "referring_site": None, "shipping_lines": [], "taxes_included": False,
        "total_weight": 0, "currency": "THB", "presentment_currency": "THB", "completed_at": None, "closed_at": None,
        "user_id": None, "location_id": None, "source_identifier": None, "source_url": None, "device_id": None,
        "phone": None, "customer_locale": "en", "line_items": [shopify_line_item(quantity=2)],
        "name": "#981820079255243537", "source": None,
        "abandoned_checkout_url": "https://ecrm-test.myshopify.com/checkouts/123123123/recover?key=example",
        "discount_codes": [], "tax_lines": [], "source_name": "web", "total_discounts": "0.00",
        "total_line_items_price": "1780.00", "total_price": "1780.00", "total_tax": "0.00",
        "subtotal_price": "1780.00", "customer": shopify_customer(), **overrides,
    }


def shopify_redact() -> dict[str, Any]:
    return {"shop_id": 954889, "shop_domain": SHOP_DOMAIN,
            "customer": {"id": CUSTOMER_ID, "email": "john@example.com", "phone": "+66812345678"},
            "orders_to_redact": [ORDER_ID]}


def woo_order(status: str = "processing", customer_id: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "id": 727, "parent_id": 0, "number": "727", "order_key": "wc_order_58d2d042d1d", "created_via": "checkout",
        "version": "9.4.0", "status": status, "currency": "EUR", "date_created": "2026-01-01T10:00:00",
        "date_created_gmt": "2026-01-01T09:00:00", "date_modified": "2026-01-01T10:00:00",
        "date_modified_gmt": "2026-01-01T09:00:00", "discount_total": "0.00", "discount_tax": "0.00",
        "shipping_total": "10.00", "shipping_tax": "0.00", "cart_tax": "1.35", "total": "35.00", "total_tax": "1.35",
        "prices_include_tax": False, "customer_id": customer_id, "customer_ip_address": "", "customer_user_agent": "",
        "customer_note": "",
        "billing": {"first_name": "Jane", "last_name": "Doe", "company": "", "address_1": "969 Market",
                    "address_2": "", "city": "Paris", "state": "", "postcode": "75001", "country": "FR",
                    "email": "Jane.Doe@example.com", "phone": "(555) 555-5555"},
        "shipping": {"first_name": "Jane", "last_name": "Doe", "company": "", "address_1": "969 Market",
                     "address_2": "", "city": "Paris", "state": "", "postcode": "75001", "country": "FR"},
        "payment_method": "bacs", "payment_method_title": "Direct Bank Transfer", "transaction_id": "",
        "date_paid": None, "date_completed": None, "cart_hash": "", "meta_data": [],
        "line_items": [
            {"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2, "tax_class": "",
             "subtotal": "6.00", "subtotal_tax": "0.45", "total": "6.00", "total_tax": "0.45", "taxes": [],
             "meta_data": [], "sku": "WOO-1", "price": 3},
            {"id": 316, "name": "Ship Your Idea", "product_id": 22, "variation_id": 23, "quantity": 3,
             "tax_class": "", "subtotal": "25.00", "subtotal_tax": "0.90", "total": "25.00", "total_tax": "0.90",
             "taxes": [], "meta_data": [], "sku": "", "price": 8.333333},
        ],
        "tax_lines": [], "shipping_lines": [], "fee_lines": [], "coupon_lines": [], "refunds": [],
        **overrides,
    }


def woo_customer(**overrides: Any) -> dict[str, Any]:
    return {
        "id": 25, "date_created": "2026-01-01T10:00:00", "date_created_gmt": "2026-01-01T09:00:00",
        "date_modified": "2026-01-01T10:00:00", "date_modified_gmt": "2026-01-01T09:00:00",
        "email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "role": "customer",
        "username": "john.doe",
        "billing": {"first_name": "John", "last_name": "Doe", "company": "", "address_1": "969 Market",
                    "address_2": "", "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US",
                    "email": "john.doe@example.com", "phone": "+14155552671"},
        "shipping": {}, "is_paying_customer": False, "avatar_url": "https://secure.gravatar.com/avatar/x",
        "meta_data": [], **overrides,
    }
