"""Unsubscribe tokens and Message-ID tags are stable bytes: links already in inboxes and IDs
already sent must keep verifying after any change to how they are computed."""

from __future__ import annotations

import base64
import hmac
import struct

import pytest

from ecrm.feedback.unsubscribe import InvalidTokenError, TokenSigner, make_token, read_token
from ecrm.render.message_id import MessageIds

SECRET = "dev-only-secret-change-me"
# Computed by the first implementation (hmac.new(...).copy(), blake2b keyed per call).
TOKENS = {(1, 2): "AAAAAAAAAAEAAAAAAAAAAkBQgOctC8PEHba0WLanhhk",
          (2**64 - 1, 123456789): "__________8AAAAAB1vNFfI694XBNsSc4zvboXI7RyI"}
MESSAGE_IDS = {1: "<1.b2131a32e9088ad2@shop.example>", 987654321: "<987654321.350faf09c2ffd826@shop.example>"}


@pytest.mark.parametrize(("ids", "token"), TOKENS.items())
def test_tokens_are_the_same_bytes_as_ever_and_read_back(ids: tuple[int, int], token: str) -> None:
    assert TokenSigner(SECRET).sign(*ids) == make_token(SECRET, *ids) == token
    assert read_token(SECRET, token) == ids


def test_a_token_signed_with_another_secret_or_altered_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token("another-secret-key-of-16+", TOKENS[(1, 2)])
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token(SECRET, "B" + TOKENS[(1, 2)][1:])


@pytest.mark.parametrize(("delivery_id", "message_id"), MESSAGE_IDS.items())
def test_message_ids_are_the_same_as_ever_and_read_back(delivery_id: int, message_id: str) -> None:
    ids = MessageIds(SECRET, "shop.example")
    assert ids.make(delivery_id) == message_id
    assert ids.delivery_of(message_id) == delivery_id
    assert ids.delivery_of(message_id.replace(".", ".0", 1)) is None
    assert MessageIds("another-secret-key-of-16+", "shop.example").delivery_of(message_id) is None


@pytest.mark.parametrize("secret", ["k", SECRET, "x" * 64, "y" * 65, "ünïcode-secret-" * 9])
def test_the_precomputed_signer_is_plain_hmac_sha256(secret: str) -> None:
    for ids in [(0, 0), (1, 2), (2**63, 7), (2**64 - 1, 2**64 - 1)]:
        token = TokenSigner(secret).sign(*ids)
        body = struct.pack(">QQ", *ids)
        expected = hmac.digest(secret.encode(), b"unsubscribe:" + body, "sha256")[:16]
        assert base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)) == body + expected
        assert read_token(secret, token) == ids
