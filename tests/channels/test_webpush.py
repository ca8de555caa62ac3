"""The web push adapter against the local push service (`ecrm.peers.push_service`): the service
checks the VAPID JWT and decrypts each body with the browser's private key (by `http_ece`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from ecrm.channels.push.webpush import SubscriptionGone, WebPush, origin, retry_after
from ecrm.errors import PermanentSendError, TransientSendError
from ecrm.messages import OutgoingPush, PushTarget
from ecrm.peers.push_service import BrowserSubscription, PushService
from ecrm.push import vapid
from ecrm.push.encryption import MAX_PAYLOAD, body_size, encrypt
from ecrm.push.vapid_jwt import VapidTokens, verify
from tests.webpush import service

__all__ = ["service"]  # the fixture
KEYS = vapid.new_key_pair()


@pytest.fixture
async def adapter() -> AsyncIterator[WebPush]:
    push = WebPush(VapidTokens(KEYS.private_key, KEYS.public_key, "mailto:ops@shop.example"), connections=4)
    yield push
    await push.close()


def target(sub: BrowserSubscription) -> PushTarget:
    keys = sub.to_json()["keys"]
    assert isinstance(keys, dict)
    return PushTarget(sub.number, sub.endpoint, keys["p256dh"], keys["auth"])


def message(*subs: BrowserSubscription, payload: bytes = b'{"title": "Hi", "body": "Back in stock"}',
            topic: str | None = None) -> OutgoingPush:
    return OutgoingPush([target(s) for s in subs], payload, 3600, "high", topic)


async def test_the_plaintext_arrives_decrypted_by_the_browser_keys_with_ttl_urgency_and_topic(
    service: PushService, adapter: WebPush
) -> None:
    sub = service.subscribe()
    payload = json.dumps({"title": "سلام سارا 🎉", "body": "x" * 100}, ensure_ascii=False).encode()

    result = await adapter.send(message(sub, payload=payload, topic="sale-1"))

    assert service.refused == []
    [got] = service.received
    assert got.number == sub.number and got.plaintext == payload
    assert (got.headers["TTL"], got.headers["Urgency"], got.headers["Topic"]) == ("3600", "high", "sale-1")
    assert got.headers["Content-Encoding"] == "aes128gcm"
    assert result.provider == "webpush" and result.provider_message_id == f"{service.origin}/messages/1"


async def test_the_vapid_token_names_the_origin_and_is_signed_once_per_origin(
    service: PushService, adapter: WebPush
) -> None:
    first, second = service.subscribe(), service.subscribe()
    await adapter.send(message(first))
    await adapter.send(message(second))

    headers = {r.headers["Authorization"] for r in service.received}
    assert len(headers) == 1  # one JWT for the origin, reused
    claims = verify(headers.pop(), service.origin, time.time())
    assert claims["aud"] == service.origin and claims["sub"] == "mailto:ops@shop.example"


def test_a_token_is_signed_again_near_its_expiry_and_a_wrong_one_is_refused() -> None:
    now = [1_000_000.0]
    tokens = VapidTokens(KEYS.private_key, KEYS.public_key, "mailto:a@b.example", now=lambda: now[0])
    first = tokens.header("https://push.example")
    now[0] += 10 * 3600
    assert tokens.header("https://push.example") == first
    now[0] += 2 * 3600
    renewed = tokens.header("https://push.example")
    assert renewed != first
    assert verify(renewed, "https://push.example", now[0])["exp"] == int(now[0]) + 12 * 3600
    with pytest.raises(ValueError, match="aud"):
        verify(renewed, "https://other.example", now[0])
    with pytest.raises(ValueError, match="exp"):
        verify(renewed, "https://push.example", now[0] + 13 * 3600)
    other = vapid.new_key_pair().public_key
    with pytest.raises(ValueError, match="signature"):
        verify(renewed.replace(KEYS.public_key, other), "https://push.example", now[0])


async def test_a_push_service_refuses_a_token_signed_by_another_key(service: PushService) -> None:
    sub = service.subscribe()
    forged = VapidTokens(vapid.new_key_pair().private_key, KEYS.public_key, "mailto:a@b.example")
    push = WebPush(forged)
    try:
        with pytest.raises(PermanentSendError, match="403"):
            await push.send(message(sub))
    finally:
        await push.close()
    assert service.received == [] and "signature" in service.refused[0]


async def test_gone_subscriptions_are_listed_and_the_delivery_fails_when_every_one_is_gone(
    service: PushService, adapter: WebPush
) -> None:
    a, b = service.subscribe(), service.subscribe()
    service.script = {a.number: [410], b.number: [404]}
    sent = message(a, b)
    with pytest.raises(SubscriptionGone, match="gone"):
        await adapter.send(sent)
    assert sorted(sent.gone) == [a.number, b.number]


async def test_a_profile_with_several_subscriptions_is_sent_when_any_accepted(
    service: PushService, adapter: WebPush
) -> None:
    live, gone, busy = service.subscribe(), service.subscribe(), service.subscribe()
    service.script = {gone.number: [410], busy.number: [500]}
    sent = message(live, gone, busy)

    result = await adapter.send(sent)

    assert result.provider_message_id.endswith("/messages/1")
    assert [r.number for r in service.received] == [live.number] and sent.gone == [gone.number]


async def test_429_waits_its_retry_after_and_5xx_and_dead_services_are_transient(
    service: PushService, adapter: WebPush
) -> None:
    sub = service.subscribe()
    service.script = {sub.number: [429, 503]}
    with pytest.raises(TransientSendError) as throttled:
        await adapter.send(message(sub))
    assert throttled.value.retry_after == 7.0
    with pytest.raises(TransientSendError, match="503"):
        await adapter.send(message(sub))
    await service.close()
    with pytest.raises(TransientSendError, match="push service"):
        await adapter.send(message(sub))
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 30.0 and retry_after("soon", now) is None
    assert retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0 and retry_after(None, now) is None


def test_a_payload_that_would_exceed_4096_bytes_once_encrypted_is_refused() -> None:
    sub = PushService().subscribe()
    keys = sub.to_json()["keys"]
    assert isinstance(keys, dict)
    assert body_size(MAX_PAYLOAD) == 4096
    assert len(encrypt(b"x" * MAX_PAYLOAD, keys["p256dh"], keys["auth"])) == 4096
    with pytest.raises(ValueError, match="3993"):
        encrypt(b"x" * (MAX_PAYLOAD + 1), keys["p256dh"], keys["auth"])


@pytest.mark.parametrize("endpoint", [
    "https://fcm.googleapis.com/fcm/send/abc:def", "https://updates.push.services.mozilla.com/wpush/v2/x//y",
    "https://web.push.apple.com:443/QGx", "https://[::1]:8443/push/1", "https://host.example?x=/y",
    "https://host.example#f/g", "https://host.example", "https://user@host.example/p", "HTTPS://Host.Example/p",
])
def test_the_origin_is_urlsplit_s_scheme_and_host(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    assert origin(PushTarget(1, endpoint, "", "")) == f"{parts.scheme}://{parts.netloc}"
