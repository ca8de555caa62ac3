"""RFC 8291 message encryption: the RFC's own example to the byte, and a fresh sender key pair
and salt for every message, which the browser's keys decrypt."""

from __future__ import annotations

import http_ece
import pytest

from ecrm.peers.push_service import PushService
from ecrm.push import vapid
from ecrm.push.encryption import HEADER_BYTES, encrypt, seal

# RFC 8291 Appendix A
PLAINTEXT = b"When I grow up, I want to be a watermelon"
SENDER_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RECEIVER_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6P"
        "Bru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def test_the_rfc_8291_example_gives_its_published_body() -> None:
    receiver = vapid.b64url_decode(RECEIVER_PUBLIC)
    body = seal(PLAINTEXT, vapid.public_key_from_bytes(receiver), receiver, vapid.b64url_decode(AUTH),
                vapid.private_key_from(SENDER_PRIVATE), vapid.b64url_decode(SALT))
    assert vapid.b64url_encode(body) == BODY


def test_each_message_gets_its_own_key_pair_and_salt_and_opens_with_the_browser_keys() -> None:
    sub = PushService().subscribe()
    keys = sub.to_json()["keys"]
    assert isinstance(keys, dict)
    first, second = (encrypt(PLAINTEXT, keys["p256dh"], keys["auth"]) for _ in range(2))

    assert first[:16] != second[:16]  # salt
    assert first[21:HEADER_BYTES] != second[21:HEADER_BYTES]  # the sender's public key, the key id
    for body in (first, second):
        opened = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
        assert opened == PLAINTEXT


def test_a_subscription_key_that_is_not_a_p256_point_is_refused() -> None:
    point = bytearray(vapid.b64url_decode(RECEIVER_PUBLIC))
    point[-1] ^= 1  # off the curve
    with pytest.raises(ValueError, match="not a point on the P-256 curve"):
        encrypt(PLAINTEXT, vapid.b64url_encode(bytes(point)), AUTH)
    with pytest.raises(ValueError, match="65-byte"):
        encrypt(PLAINTEXT, RECEIVER_PUBLIC[:40], AUTH)
