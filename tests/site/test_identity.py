"""Tracked-link tokens and server signatures: a token names its profile and nothing forged or
altered passes; `site_link` in an email template adds the recipient's token to a shop URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrm.errors import ConfigError
from ecrm.feedback.unsubscribe import make_token
from ecrm.render.email import EmailComposer
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.settings import load_settings
from ecrm.site.identity import (
    SiteLink,
    identify_signature,
    make_click_token,
    read_click_token,
    signature_matches,
)

SECRET = "test-secret-key-0123456789"


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_a_token_names_its_profile(profile_id: int) -> None:
    assert read_click_token(SECRET, make_click_token(SECRET, profile_id)) == profile_id


def test_forged_altered_or_foreign_tokens_name_nobody() -> None:
    token = make_click_token(SECRET, 12345)
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert read_click_token("another-secret-0123456789", token) is None
    assert read_click_token(SECRET, flipped) is None
    assert read_click_token(SECRET, token[:-2]) is None
    assert read_click_token(SECRET, "zz" + token[2:]) is None
    assert read_click_token(SECRET, "") is None
    assert read_click_token(SECRET, make_token(SECRET, 1, 12345)) is None  # an unsubscribe token is not one


def test_the_shop_servers_signature() -> None:
    signature = identify_signature("s", "customer-1")
    assert signature_matches("s", "customer-1", signature.upper())
    assert not signature_matches("s", "customer-2", signature)


def test_site_link_keeps_the_query_and_fragment() -> None:
    url = SiteLink(SECRET, 77)("https://shop.example/p/hat?utm_source=email#reviews")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (parts.path, parts.fragment, query["utm_source"]) == ("/p/hat", "reviews", ["email"])
    assert read_click_token(SECRET, query["ecrm_c"][0]) == 77


def test_an_email_template_can_link_to_the_shop_with_the_recipients_token(tmp_path: Path) -> None:
    folder = tmp_path / "templates" / "promo"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hats")
    (folder / "body.txt").write_text('{{ site_link("https://shop.example/hats?a=1") }}\n')
    (folder / "body.html").write_text('<a href="{{ site_link("https://shop.example/hats?a=1") }}">Hats</a>\n')
    settings = load_settings(Path("/nonexistent"), environ={}, secret_key=SECRET)
    composer = EmailComposer(settings, TemplateCatalog(tmp_path / "templates"), "promo", "promo")
    rendered = composer.render(sample_recipient("en", profile_id=4242))
    link = rendered.text.strip()
    assert read_click_token(SECRET, parse_qs(urlsplit(link).query)["ecrm_c"][0]) == 4242
    assert f'href="{link.replace("&", "&amp;")}"' in rendered.html


def test_allowed_origins_read_as_the_browser_writes_them_and_a_bad_one_names_its_key() -> None:
    settings = load_settings(Path("/nonexistent"), environ={
        "ECRM_SITE__ALLOWED_ORIGINS": "https://Shop.Example, http://b.example:80/, https://c.example:8443"})
    assert settings.site.allowed_origins == ("https://shop.example", "http://b.example", "https://c.example:8443")
    with pytest.raises(ConfigError) as refused:
        load_settings(Path("/nonexistent"), environ={"ECRM_SITE__ALLOWED_ORIGINS": "https://a.example/shop"})
    assert "site.allowed_origins" in str(refused.value) and "ECRM_SITE__ALLOWED_ORIGINS" in str(refused.value)
