"""Unsubscribe tokens and Message-ID tags are stable bytes: links already in inboxes and IDs
already sent must keep verifying after any change to how they are computed."""

from __future__ import annotations

import base64
import hmac
import re

import pytest

from ecrm.feedback.unsubscribe import InvalidTokenError, TokenSigner, make_token, read_token
from ecrm.render.message_id import MessageIds

SECRET = "dev-only-secret-change-me"
# The first format (base64url of zero-padded ids), computed by the first implementation
# (hmac.new(...).copy(), blake2b keyed per call): links in inboxes that must keep working.
FIRST_FORMAT = {(1, 2): "AAAAAAAAAAEAAAAAAAAAAkBQgOctC8PEHba0WLanhhk",
                (1_000_000, 10_000): "AAAAAAAPQkAAAAAAAAAnEOVwnYbaxgLHr6_Ptsf0img"}
FIRST_FORMAT_PAST_BIGINT = "__________8AAAAAB1vNFfI694XBNsSc4zvboXI7RyI"  # (2**64 - 1, 123456789)
# The compact format (hex, minimal-length ids), as first released.
TOKENS = {(1, 2): "11010222b6afd7665152e683257897038f623d",
          (987654321, 123456789): "443ade68b1075bcd156c1bdfd93d0fe6a447b900372d37563c"}
MESSAGE_IDS = {1: "<1.b2131a32e9088ad2@shop.example>", 987654321: "<987654321.350faf09c2ffd826@shop.example>"}


@pytest.mark.parametrize(("ids", "token"), TOKENS.items())
def test_tokens_are_the_same_bytes_as_ever_and_read_back(ids: tuple[int, int], token: str) -> None:
    assert TokenSigner(SECRET).sign(*ids) == make_token(SECRET, *ids) == token
    assert read_token(SECRET, token) == ids


@pytest.mark.parametrize(("ids", "token"), FIRST_FORMAT.items())
def test_tokens_of_the_first_format_still_read_back(ids: tuple[int, int], token: str) -> None:
    assert read_token(SECRET, token) == ids
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token(SECRET, "B" + token[1:])


def test_a_signed_token_naming_ids_past_bigint_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="malformed"):
        read_token(SECRET, FIRST_FORMAT_PAST_BIGINT)
    with pytest.raises(InvalidTokenError, match="malformed"):
        read_token(SECRET, TokenSigner(SECRET).sign(2**63, 1))


def test_a_token_signed_with_another_secret_or_altered_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token("another-secret-key-of-16+", TOKENS[(1, 2)])
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token(SECRET, TOKENS[(1, 2)][:-1] + "0")


@pytest.mark.parametrize("token", ["", "zz", "ab" * 20, " " + "ab" * 19 + "a", "0" * 66, "9" * 38, "ff" * 40])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError, match="malformed"):
        read_token(SECRET, token)


def test_the_bytes_of_a_compact_token_do_not_pass_as_a_first_format_one() -> None:
    """The formats are tagged under different prefixes: the compact format's body, padded to the
    first format's 16 bytes, with the same tag, is not a valid token."""
    raw = bytes.fromhex(TokenSigner(SECRET).sign(123456789, 1234567))
    body, tag = raw[:-16], raw[-16:]
    forged = base64.urlsafe_b64encode(body.rjust(16, b"\0") + tag).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError, match="signature"):
        read_token(SECRET, forged)


def test_tokens_have_no_capitals_and_no_run_of_one_letter() -> None:
    """Zero-padded ids (`AAAAAAAAD0JA...`) made Persian and Thai bodies "mostly capitals"."""
    signer = TokenSigner(SECRET)
    for delivery_id in range(1_000_000, 1_020_000, 7):
        token = signer.sign(delivery_id, delivery_id // 3)
        assert token == token.lower() and read_token(SECRET, token) == (delivery_id, delivery_id // 3)
        ids_part = token[: -32]  # the tag, random, may hold any run now and then
        assert re.search(r"([a-z])\1{3}", ids_part) is None and re.search(r"([a-z])\1{5}", token) is None, token


@pytest.mark.parametrize(("delivery_id", "message_id"), MESSAGE_IDS.items())
def test_message_ids_are_the_same_as_ever_and_read_back(delivery_id: int, message_id: str) -> None:
    ids = MessageIds(SECRET, "shop.example")
    assert ids.make(delivery_id) == message_id
    assert ids.delivery_of(message_id) == delivery_id
    assert ids.delivery_of(message_id.replace(".", ".0", 1)) is None
    assert MessageIds("another-secret-key-of-16+", "shop.example").delivery_of(message_id) is None


@pytest.mark.parametrize("secret", ["k", SECRET, "x" * 64, "y" * 65, "ünïcode-secret-" * 9])
def test_the_precomputed_signer_is_plain_hmac_sha256(secret: str) -> None:
    for ids in [(0, 0), (1, 2), (300, 70_000), (2**63 - 1, 7)]:
        token = TokenSigner(secret).sign(*ids)
        delivery, profile = (n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big") for n in ids)
        body = bytes([len(delivery) * 16 + len(profile)]) + delivery + profile
        expected = hmac.digest(secret.encode(), b"unsubscribe-compact:" + body, "sha256")[:16]
        assert bytes.fromhex(token) == body + expected
        assert read_token(secret, token) == ids
