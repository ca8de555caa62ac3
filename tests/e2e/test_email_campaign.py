"""YAML -> campaign -> SMTP, end to end, on SQLite and PostgreSQL, sent in this process."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.load import load_campaign
from ecrm.deliveries.models import Delivery
from ecrm.feedback.unsubscribe import read_token
from ecrm.local import launch_in_process
from ecrm.profiles.models import Profile
from ecrm.settings import Settings
from tests.factories import add_profile, add_profiles
from tests.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
WELCOME = ROOT / "campaigns" / "welcome.yaml"


async def deliveries_by_email(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Delivery]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.email, Delivery).join(Profile, Profile.id == Delivery.profile_id))
        return {str(email): delivery for email, delivery in rows}


async def test_welcome_campaign_reaches_each_locale_with_its_own_text_and_unsubscribe_headers(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    for locale in ("en", "fa", "th"):
        await add_profile(sessions, external_id=f"c-{locale}", locale=locale, traits={"points": 1500})
    await add_profile(sessions, external_id="no-consent", consent=None)
    await add_profile(sessions, external_id="withdrawn", consent="withdrawn")
    await add_profile(sessions, external_id="german", locale="de")

    spec = load_campaign(WELCOME, send_settings)
    await launch_in_process(send_settings, spec, str(WELCOME))

    messages = smtp.handler.messages()
    assert set(messages) == {"c-en@example.com", "c-fa@example.com", "c-th@example.com"}
    expected = {"en": ("Welcome to Example Shop, Emma!", "Thanks for joining", 'dir="ltr"'),
                "fa": ("سارا عزیز، به فروشگاه نمونه خوش آمدید!", "از عضویت شما", 'dir="rtl"'),
                "th": ("ยินดีต้อนรับสู่ร้านตัวอย่าง คุณสมชาย!", "ขอบคุณที่สมัครสมาชิก", 'dir="ltr"')}
    for locale, (subject, body, direction) in expected.items():
        message = messages[f"c-{locale}@example.com"]
        text, html = (part.get_content() for part in message.iter_parts())
        assert message["Subject"] == subject
        assert body in text and body in html
        assert direction in html and f'lang="{locale}"' in html
        assert message.defects == []
    assert "1,500" in messages["c-en@example.com"].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "۱٬۵۰۰" in messages["c-fa@example.com"].get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_each_message_carries_a_stored_message_id_and_a_signed_one_click_unsubscribe_link(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    await add_profiles(sessions, 6, ("en", "fa", "th"))
    await launch_in_process(send_settings, load_campaign(WELCOME, send_settings), str(WELCOME))

    deliveries = await deliveries_by_email(sessions)
    messages = smtp.handler.messages()
    assert len(messages) == 6 and set(messages) == set(deliveries)
    ids = set()
    for email, message in messages.items():
        delivery = deliveries[email]
        assert delivery.status == "sent" and delivery.sent_at is not None
        assert message["Message-ID"] == delivery.provider_message_id
        ids.add(delivery.provider_message_id)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = message["List-Unsubscribe"].strip().strip("<>")
        assert link.startswith("https://crm.shop.example/u/")
        token = link.rsplit("/", 1)[1]
        assert read_token(send_settings.secret_key, token) == (delivery.id, delivery.profile_id)
        assert link in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert len(ids) == 6


async def test_launching_the_same_run_again_sends_nothing_new(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    await add_profiles(sessions, 9, ("en", "fa", "th"))
    spec = load_campaign(WELCOME, send_settings)
    first, _ = await launch_in_process(send_settings, spec, str(WELCOME))
    again, _ = await launch_in_process(send_settings, spec, str(WELCOME))

    assert first.created and not again.created and first.run_id == again.run_id
    assert sorted(smtp.handler.per_recipient().values()) == [1] * 9
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 9


async def test_a_new_run_key_is_a_new_send_and_new_profiles_join_a_resumed_run(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    await add_profiles(sessions, 3)
    spec = load_campaign(WELCOME, send_settings)
    await launch_in_process(send_settings, spec, str(WELCOME))
    await add_profile(sessions, external_id="late")
    await launch_in_process(send_settings, spec, str(WELCOME))
    await launch_in_process(send_settings, spec, str(WELCOME), run_key="second")

    counts = smtp.handler.per_recipient()
    assert counts["late@example.com"] == 2
    assert [counts[f"p{i}@example.com"] for i in range(3)] == [2, 2, 2]


async def test_a_provider_outage_is_retried_and_every_recipient_gets_exactly_one_message(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 10, ("en", "fa"))
    smtp.handler.fail_next = 5
    _, queue = await launch_in_process(send_settings, load_campaign(WELCOME, send_settings), str(WELCOME))

    assert queue.failed == []
    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    deliveries = await deliveries_by_email(sessions)
    assert {d.status for d in deliveries.values()} == {"sent"}
    assert max(d.attempts for d in deliveries.values()) >= 2


async def test_a_refused_address_fails_alone_and_is_not_retried(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 5)
    smtp.handler.refuse = {emails[2]}
    await launch_in_process(send_settings, load_campaign(WELCOME, send_settings), str(WELCOME))

    deliveries = await deliveries_by_email(sessions)
    assert deliveries[emails[2]].status == "failed" and deliveries[emails[2]].attempts == 1
    assert "550" in (deliveries[emails[2]].error or "")
    assert {deliveries[e].status for e in emails if e != emails[2]} == {"sent"}
    assert emails[2] not in smtp.handler.per_recipient()
