"""Pre-encoded MIME must parse cleanly with the stdlib parser, in every script we send."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from ecrm.render.mime import EmailHeaders, MimeSkeleton, encode_header

CASES = {
    "en": ("Your cart misses you, Emma", "Hello Emma,\n\nA line with = and a very long " + "word " * 40, "<p>Hi</p>"),
    "fa": ("سارا عزیز، سبد خرید شما منتظر است! یک پیشنهاد ویژه فقط برای امروز و فردا",
           "سلام سارا،\n\nخط دوم", '<html dir="rtl"><p>سلام</p></html>'),
    "th": ("คุณสมชาย สินค้าในตะกร้ายังรออยู่ รับส่วนลดพิเศษวันนี้เท่านั้น", "สวัสดีครับ\nบรรทัดที่สอง", "<p>สวัสดี</p>"),
}


def build(locale: str) -> tuple[bytes, EmailMessage]:
    subject, text, html = CASES[locale]
    skeleton = MimeSkeleton("فروشگاه Example", "news@shop.example", locale)
    headers = EmailHeaders("buyer@example.com", subject, "<abc123@shop.example>", "<https://crm.example/u/TOKEN>")
    data = skeleton.build(headers, text, html)
    return data, BytesParser(policy=policy.default).parsebytes(data)


@pytest.mark.parametrize("locale", CASES)
def test_every_header_and_part_round_trips_through_the_stdlib_parser(locale: str) -> None:
    data, message = build(locale)
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
    assert all(len(line) <= 78 for line in data.split(b"\r\n")), "RFC 5322 recommends lines of 78 or less"
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_header_values_cannot_inject_new_headers() -> None:
    assert encode_header("Subject", "Hi\r\nBcc: victim@example.com") == b"Subject: Hi Bcc: victim@example.com\r\n"


def test_each_skeleton_has_its_own_boundary_absent_from_encoded_bodies() -> None:
    first, _ = build("en")
    second, _ = build("en")
    boundary = first.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    assert boundary not in second
    assert first.count(boundary) == 4  # declaration, two parts, closing
