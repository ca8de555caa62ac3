"""The registry pairs each channel kind's composer with its providers on one message type, so
the type checker refuses a composer whose messages a provider cannot send. These tests run mypy
on two small modules that build a pairing: the email one as registered, and a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

from mypy import api

from ecrm.channels.registry import EMAIL, PAIRINGS, PUSH, SMS, Channels
from ecrm.render.email import EmailComposer
from ecrm.render.sms import SmsComposer
from ecrm.settings import Settings
from ecrm.types import ChannelKind
from tests.conftest import ROOT

HEAD = """
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.channels.registry import Pairing
from ecrm.clock import Clock
from ecrm.messages import OutgoingEmail
from ecrm.render.email import EmailComposer
from ecrm.render.sms import SmsComposer
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings
from ecrm.types import ChannelKind


class TextComposer:
    def __init__(self, settings: Settings, catalog: TemplateCatalog, template: str, label: str, clock: Clock,
                 stream: str) -> None:
        self.template = template

    def compose(self, recipient: Recipient) -> str:
        return self.template
"""


def check(tmp_path: Path, body: str) -> tuple[str, int]:
    module = tmp_path / "pairing_check.py"
    module.write_text(HEAD + body)
    # the project's own mypy settings, so the cache `scripts/test`'s mypy run leaves is reused
    limit = sys.getrecursionlimit()  # mypy raises it for good; a 10,000-deep JSON body must still overflow
    try:
        out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary",
                                    "--cache-dir", str(ROOT / ".mypy_cache"), str(module)])
    finally:
        sys.setrecursionlimit(limit)
    return out + err, status


def test_a_composer_paired_with_providers_of_its_own_message_type_checks(tmp_path: Path) -> None:
    report, status = check(tmp_path, 'Pairing[OutgoingEmail](ChannelKind.EMAIL, EmailComposer, '
                                     '{"smtp": SmtpEmail.from_settings}, default="smtp")\n')
    assert status == 0, report


def test_a_composer_paired_with_a_provider_of_another_message_type_is_refused(tmp_path: Path) -> None:
    report, status = check(tmp_path, 'Pairing[str](ChannelKind.SMS, TextComposer, '
                                     '{"smtp": SmtpEmail.from_settings}, default="smtp")\n')
    assert status == 1 and "pairing_check.py:" in report and "Channel[str]" in report, report


async def test_every_kind_is_registered_once_with_its_default_provider(settings: Settings) -> None:
    assert PAIRINGS == {ChannelKind.EMAIL: EMAIL, ChannelKind.SMS: SMS, ChannelKind.PUSH: PUSH}
    assert EMAIL.composer is EmailComposer
    assert SMS.composer is SmsComposer and SMS.default == "twilio"
    assert all(p.default in p.providers for p in PAIRINGS.values())
    channels = Channels(settings)
    assert channels.open(EMAIL) is channels.open(EMAIL, "smtp")  # one live adapter per provider
    await channels.close()
