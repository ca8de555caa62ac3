"""The SMS composer: each locale's `sms.txt` with the email parts' folder fallback, its parts
counted, and the status callback naming the delivery."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.render.sms import SmsComposer
from ecrm.settings import load_settings
from tests.conftest import ROOT

SETTINGS = load_settings(Path("/nonexistent"), environ={}, public_url="https://crm.shop.example/")


def composer(root: Path = ROOT / "templates") -> SmsComposer:
    return SmsComposer(SETTINGS, TemplateCatalog(root), "welcome", "welcome_sms")


def test_each_locale_gets_its_folders_text_and_a_regional_locale_falls_back_to_its_language() -> None:
    sms = composer()
    english = sms.compose(sample_recipient("en", delivery_id=42, first_name="Emma", traits={"points": 1500}))
    persian = sms.compose(sample_recipient("fa_IR", first_name="سارا", traits={"points": 1500}))
    assert english.body == ("Example Shop: welcome, Emma! 1,500 welcome points are waiting for you. "
                            "Reply STOP to opt out.")
    assert english.recipient == "+15005550006" and english.parts == 1
    assert english.status_callback == "https://crm.shop.example/webhooks/twilio/status?d=42"
    assert persian.body.startswith("فروشگاه نمونه: سارا") and "۱٬۵۰۰" in persian.body and persian.parts == 2
    assert sms.compose(sample_recipient("de")).body.startswith("Example Shop: welcome")


def test_a_profile_without_a_phone_or_an_empty_text_cannot_be_composed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no phone number"):
        composer().compose(sample_recipient("en", phone=None))
    root = tmp_path / "templates"
    (root / "welcome").mkdir(parents=True)
    (root / "welcome" / "sms.txt").write_text("{% if false %}never{% endif %}\n")
    with pytest.raises(ValueError, match="empty"):
        composer(root).compose(sample_recipient("en"))


def test_warming_compiles_sms_only_templates_and_reports_a_broken_sms_txt(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    (root / "texts").mkdir()
    (root / "texts" / "sms.txt").write_text("Hi {{ profile.first_name }}\n")
    (root / "texts.th").mkdir()
    (root / "texts.th" / "sms.txt").write_text("{% if %}\n")
    errors = TemplateCatalog(root).warm()
    assert [error.template for error in errors] == ["texts.th/sms.txt"]
