"""Pre-encoded MIME must parse cleanly with the stdlib parser, in every script we send."""

from __future__ import annotations

import base64
import binascii
import random
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from ecrm.clock import FrozenClock
from ecrm.render.mime import EmailHeaders, MimeSkeleton, encode_body, encode_header

CASES = {
    "en": ("Your cart misses you, Emma", "Hello Emma,\n\nA line with = and a very long " + "word " * 40, "<p>Hi</p>"),
    "fa": ("سارا عزیز، سبد خرید شما منتظر است! یک پیشنهاد ویژه فقط برای امروز و فردا",
           "سلام سارا،\n\nخط دوم", '<html dir="rtl"><p>سلام</p></html>'),
    "th": ("คุณสมชาย สินค้าในตะกร้ายังรออยู่ รับส่วนลดพิเศษวันนี้เท่านั้น", "สวัสดีครับ\nบรรทัดที่สอง", "<p>สวัสดี</p>"),
}


def build(locale: str, eight_bit: bool = True) -> tuple[bytes, EmailMessage]:
    subject, text, html = CASES[locale]
    skeleton = MimeSkeleton("فروشگاه Example", "news@shop.example", locale, eight_bit)
    headers = EmailHeaders("buyer@example.com", subject, "<abc123@shop.example>", "<https://crm.example/u/TOKEN>")
    data, has_8bit = skeleton.build(headers, text, html)
    assert has_8bit == (eight_bit and not (text + html).isascii())
    return data, BytesParser(policy=policy.default).parsebytes(data)


@pytest.mark.parametrize("eight_bit", [True, False], ids=["as-written", "encoded"])
@pytest.mark.parametrize("locale", CASES)
def test_every_header_and_part_round_trips_through_the_stdlib_parser(locale: str, eight_bit: bool) -> None:
    data, message = build(locale, eight_bit)
    subject, text, html = CASES[locale]
    assert message.defects == []
    assert message["Subject"] == " ".join(subject.split())
    assert message["From"].addresses[0].display_name == "فروشگاه Example"
    assert message["To"] == "buyer@example.com"
    assert message["Message-ID"] == "<abc123@shop.example>"
    assert message["List-Unsubscribe"] == "<https://crm.example/u/TOKEN>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Content-Language"] == locale and message["Date"] is not None
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")
    assert rich.get_content().replace("\r\n", "\n") == html
    longest = 998 if eight_bit else 78  # RFC 5322: 998 at most, 78 recommended (met when encoded)
    assert all(len(line) <= longest for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.isascii() == (not eight_bit or (text + html).isascii())


def test_header_values_cannot_inject_new_headers() -> None:
    assert encode_header("Subject", "Hi\r\nBcc: victim@example.com") == b"Subject: Hi Bcc: victim@example.com\r\n"


def test_each_skeleton_has_its_own_boundary_absent_from_encoded_bodies() -> None:
    first, _ = build("en")
    second, _ = build("en")
    boundary = first.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    assert boundary not in second
    assert first.count(boundary) == 4  # declaration, two parts, closing


def _reference_words(value: str) -> list[bytes]:
    """RFC 2047 words the plain way: UTF-8 cut every 39 bytes, moved back to a character start."""
    data, words, start = value.encode(), [], 0
    while start < len(data):
        end = min(start + 39, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(b"=?utf-8?b?" + base64.b64encode(data[start:end]) + b"?=")
        start = end
    return words


@pytest.mark.parametrize("seed", range(5))
def test_encoded_words_hold_whole_characters_in_any_mix_of_widths(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(300):
        value = "".join(rnd.choice("aé€😀سก ") for _ in range(rnd.randrange(1, 130))) + "€"
        value = " ".join(value.split())
        assert encode_header("Subject", value) == b"Subject: " + b"\r\n ".join(_reference_words(value)) + b"\r\n"


@pytest.mark.parametrize("text", ["a\r\nb\rc\nd " * 30, "س\r\nب\rc\nد " * 30, "", "x", "سلام", "=" * 200,
                                  "س" * 28 + "a", "س" * 56 + "ab", "س" * 56 + "abc"])  # 57 bytes: one whole line
def test_encoded_bodies_have_crlf_lines_and_decode_to_the_text_with_crlf(text: str) -> None:
    cte, body = encode_body(text, as_written=False)
    assert cte == (b"quoted-printable" if text.isascii() else b"base64")
    assert b"\n" not in body.replace(b"\r\n", b"") and all(len(line) <= 76 for line in body.split(b"\r\n"))
    decoded = binascii.a2b_qp(body) if text.isascii() else base64.b64decode(body)
    assert decoded == text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.mark.parametrize("text", ["Hi Emma,\n\nline two\n", "سلام سارا\r\nخط دوم", "สวัสดี\nบรรทัด", "", "x" * 998,
                                  "ก" * 332 + "\n" + "a" * 998])  # 996 octets of Thai, then 998 ASCII
def test_bodies_whose_lines_fit_go_as_written_with_crlf_lines(text: str) -> None:
    cte, body = encode_body(text)
    assert cte == (b"7bit" if text.isascii() else b"8bit")
    assert body == text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.mark.parametrize("text", ["a" * 999, "ok\n" + "س" * 500, "a lone\rCR", "a NUL\0here", "x\n--=_ecrm_b1\n"])
def test_a_body_that_cannot_go_as_written_is_encoded(text: str) -> None:
    cte, body = encode_body(text, boundary=b"=_ecrm_b1")
    assert cte == (b"quoted-printable" if text.isascii() else b"base64")
    assert body.isascii() and all(len(line) <= 76 for line in body.split(b"\r\n"))
    decoded = binascii.a2b_qp(body) if text.isascii() else base64.b64decode(body)
    assert decoded == text.replace("\n", "\r\n").encode()


def test_the_date_header_is_the_composers_clock_and_follows_it() -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC))
    skeleton = MimeSkeleton("Shop", "news@shop.example", "en", clock=clock)
    headers = EmailHeaders("buyer@example.com", "Hi", "<a@shop.example>", "<https://crm.example/u/T>")

    first = BytesParser(policy=policy.default).parsebytes(skeleton.build(headers, "t", "<p>h</p>")[0])
    clock.advance(3600)
    later = BytesParser(policy=policy.default).parsebytes(skeleton.build(headers, "t", "<p>h</p>")[0])

    assert first["Date"].datetime == clock.now() - timedelta(hours=1)
    assert later["Date"].datetime == clock.now()
