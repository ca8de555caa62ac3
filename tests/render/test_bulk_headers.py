"""What mailbox providers require of a bulk sender, on a composed email: List-Id, Feedback-ID,
Precedence, a +0000 Date, List-Unsubscribe within 78 columns, IDNA domains and no encoded
word inside an address."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from ecrm.clock import FrozenClock
from ecrm.render.addresses import AddressError, wire_address
from ecrm.render.bulk_headers import feedback_id, list_id, slug
from ecrm.render.composer import send_stream
from ecrm.render.email import EmailComposer
from ecrm.render.environment import TemplateCatalog
from ecrm.render.mime import list_unsubscribe
from ecrm.render.recipient import sample_recipient
from ecrm.settings import Settings, load_settings
from tests.conftest import ROOT

NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
ADDRESS_HEADERS = ("From", "To", "List-Id")


@pytest.fixture
def settings() -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates",
                         secret_key="test-secret-key-0123456789")


def composer(settings: Settings, campaign: str = "Spring Sale 2026", **email: object) -> EmailComposer:
    settings = settings.model_copy(update={
        "public_url": "https://crm.shop.example",
        "email": settings.email.model_copy(update={"unsubscribe_mailto": "unsubscribe@shop.example", **email}),
    })
    return EmailComposer(settings, TemplateCatalog(ROOT / "templates"), "welcome", campaign,
                         FrozenClock(NOW), send_stream("campaign_run", 42))


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert message.defects == [] and all(not value.defects for value in message.values() if hasattr(value, "defects"))
    return message


@pytest.mark.parametrize("locale", ["en", "fa", "th"])
def test_a_composed_email_carries_the_bulk_sender_headers(settings: Settings, locale: str) -> None:
    email = composer(settings).compose(sample_recipient(locale, delivery_id=1_000_123, profile_id=10_456))
    message = parse(email.data)
    assert message["List-Id"] == "Spring Sale 2026 <spring-sale-2026.shop.example>"
    assert message["Feedback-ID"] == "spring-sale-2026:42:campaign-run:ecrm-mail"
    assert message["Precedence"] == "bulk"
    assert message["Date"] == "Sun, 01 Mar 2026 12:00:05 +0000" and b"GMT" not in email.data
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = [link.strip() for link in str(message["List-Unsubscribe"]).split(",")]
    assert links[0].startswith("<https://crm.shop.example/u/") and links[1] == \
        "<mailto:unsubscribe@shop.example?subject=unsubscribe>"
    head = email.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head.decode()
    unfolded = head.replace(b"\r\n ", b" ").split(b"\r\n")
    for line in unfolded:
        name, _, value = line.partition(b": ")
        if name.decode() in ADDRESS_HEADERS:
            assert b"=?" not in (value if name == b"To" else value.rsplit(b"<", 1)[1]), line
    assert str(message["From"]) == "Example Shop <news@shop.example>"


def test_the_domain_of_an_internationalised_address_goes_out_as_idna(settings: Settings) -> None:
    email = composer(settings).compose(sample_recipient("en", email="kunde@bücher.example"))
    message = parse(email.data)
    assert message["To"] == "kunde@xn--bcher-kva.example" and email.recipient == "kunde@xn--bcher-kva.example"
    assert b"=?" not in email.data.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
    assert not email.smtputf8 and email.data.split(b"\r\n\r\n", 1)[0].isascii()


def test_a_non_ascii_local_part_goes_as_utf8_and_needs_smtputf8(settings: Settings) -> None:
    email = composer(settings).compose(sample_recipient("fa", email="سارا@مثال.example"))
    assert email.smtputf8 and email.recipient == "سارا@xn--mgbh0fb.example"
    assert "\r\nTo: سارا@xn--mgbh0fb.example\r\n".encode() in email.data


def test_a_non_ascii_campaign_name_is_an_encoded_phrase_and_the_list_id_stays_ascii(settings: Settings) -> None:
    email = composer(settings, "حراج بهاره").compose(sample_recipient("fa"))
    message = parse(email.data)
    assert str(message["List-Id"]).startswith("حراج بهاره <list-")
    assert re.fullmatch(r"list-[0-9a-f]{10}:42:campaign-run:ecrm-mail", message["Feedback-ID"])


def test_the_list_id_domain_and_the_feedback_sender_id_are_settings(settings: Settings) -> None:
    email = composer(settings, list_id_domain="lists.shop.example", feedback_sender_id="shop-7").compose(
        sample_recipient("en"))
    message = parse(email.data)
    assert message["List-Id"] == "Spring Sale 2026 <spring-sale-2026.lists.shop.example>"
    assert message["Feedback-ID"].endswith(":shop-7")


def test_header_builders() -> None:
    assert slug("  Welcome, Series!  ") == "welcome-series" and slug("Café Crème") == "cafe-creme"
    assert list_id('Say "hi"', "x.example") == b'List-Id: "Say \\"hi\\"" <say-hi.x.example>\r\n'
    assert feedback_id("A:b", "7", "campaign_run", "sender") == b"Feedback-ID: a-b:7:campaign-run:sender\r\n"
    short = list_unsubscribe("<https://a.example/u/1>")
    assert short == b"List-Unsubscribe: <https://a.example/u/1>\r\n"
    long = list_unsubscribe(f"<https://crm.shop.example/u/{'ab' * 23}>, <mailto:u@shop.example?subject=unsubscribe>")
    assert long == (b"List-Unsubscribe:\r\n <https://crm.shop.example/u/" + b"ab" * 23 + b">,\r\n"
                    b" <mailto:u@shop.example?subject=unsubscribe>\r\n")


@pytest.mark.parametrize("address", ["no-at-sign", "a b@example.com", "a@example.com\r\nBcc: x@y", "ü@bad..dömain"])
def test_an_address_that_cannot_go_on_the_wire_is_refused(address: str) -> None:
    with pytest.raises(AddressError):
        wire_address(address)
