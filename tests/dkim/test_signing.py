"""DKIM: a composed email signed with its From domain's key verifies with dkimpy against the
key's DNS record, and the signature covers the one-click unsubscribe headers."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from ecrm.cli import main
from ecrm.clock import FrozenClock
from ecrm.dkim.keys import DkimKey, generate, record_name
from ecrm.dkim.signer import signer_for
from ecrm.errors import ConfigError
from ecrm.render.composer import send_stream
from ecrm.render.email import EmailComposer
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.settings import DkimSettings, Settings, load_settings
from tests.conftest import ROOT, T0


def settings_with(keys: dict[str, DkimSettings]) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates",
                         secret_key="test-secret-key-0123456789", public_url="https://crm.shop.example",
                         dkim={domain: key.model_dump() for domain, key in keys.items()})


def dns_for(records: dict[str, str]) -> Callable[..., bytes | None]:
    """A dnsfunc answering TXT lookups from `records` (name -> value) only."""
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        value = records.get(name.decode())
        return value.encode() if value is not None else None
    return lookup


def compose(settings: Settings, locale: str = "fa") -> bytes:
    composer = EmailComposer(settings, TemplateCatalog(ROOT / "templates"), "welcome", "Spring Sale", FrozenClock(T0),
                             send_stream("campaign_run", 3))
    return composer.compose(sample_recipient(locale, delivery_id=1_000_001, profile_id=10_001)).data


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest) -> DkimKey:
    return generate(request.param)


def test_a_signed_email_verifies_and_its_unsubscribe_headers_are_covered(key: DkimKey) -> None:
    settings = settings_with({"shop.example": DkimSettings(selector="s1", algorithm=key.algorithm,
                                                           private_key=key.private_key.decode())})
    data = compose(settings)
    records = dns_for({record_name("shop.example", "s1"): key.record_value()})
    assert data.startswith(b"DKIM-Signature: ") and data.isascii()  # 7bit bodies: no hop re-encodes them
    assert dkim.verify(data, dnsfunc=records)
    signature = data.split(b"\r\n\r\n", 1)[0].split(b"\r\nFrom:", 1)[0].replace(b"\r\n", b"").replace(b" ", b"")
    signed = signature.split(b"h=", 1)[1].split(b";", 1)[0].split(b":")
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"list-id", b"feedback-id", b"from"} <= set(signed)
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click")
    assert not dkim.verify(tampered, dnsfunc=records)


def test_another_from_domain_is_not_signed_and_a_bad_key_is_refused_at_start(key: DkimKey) -> None:
    other = settings_with({"other.example": DkimSettings(selector="s1", private_key=key.private_key.decode(),
                                                         algorithm=key.algorithm)})
    assert not compose(other).startswith(b"DKIM-Signature")
    broken = {"shop.example": DkimSettings(selector="s1", private_key="not a key", algorithm=key.algorithm)}
    with pytest.raises(ConfigError, match="cannot sign"):
        signer_for(broken, "news@shop.example")
    missing = {"shop.example": DkimSettings(selector="s1", key_file=Path("/nonexistent/k.key"))}
    with pytest.raises(ConfigError, match=r"cannot read /nonexistent/k\.key"):
        signer_for(missing, "news@shop.example")


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_record_that_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    out = tmp_path / "s2.key"
    assert main(["--config", str(tmp_path / "none.yaml"), "dkim", "keygen", "Shop.Example", "s2",
                 "--algorithm", algorithm, "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    printed = capsys.readouterr().out
    assert "s2._domainkey.shop.example." in printed
    value = "".join(part for part in printed.split("value: ", 1)[1].split("\n", 1)[0].split('"')[1::2])
    settings = settings_with({"shop.example": DkimSettings(
        selector="s2", key_file=out, algorithm="rsa-sha256" if algorithm == "rsa" else "ed25519-sha256")})
    assert dkim.verify(compose(settings, "th"), dnsfunc=dns_for({"s2._domainkey.shop.example.": value}))
    assert main(["--config", str(tmp_path / "none.yaml"), "dkim", "keygen", "shop.example", "s2",
                 "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
