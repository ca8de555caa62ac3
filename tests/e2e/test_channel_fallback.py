"""Channel fallback end to end, on SQLite and PostgreSQL: `channels: [push, email]` gives each
profile the first channel it is reachable and consented on, records it on the delivery, and
stays idempotent when launched again after reachability changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.load import load_campaign
from ecrm.deliveries.models import Delivery, Send
from ecrm.local import launch_in_process
from ecrm.peers.push_service import PushService
from ecrm.profiles.models import Profile
from ecrm.push.models import PushSubscription
from ecrm.settings import Settings
from tests.campaign_problems import campaign_problems
from tests.conftest import T0
from tests.factories import add_profile
from tests.push_factories import grant, subscribe
from tests.smtp import SmtpServer
from tests.webpush import service, with_push

__all__ = ["service"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "back_in_stock.yaml"


@pytest.fixture
def both(send_settings: Settings) -> Settings:
    return with_push(send_settings)


async def person(sessions: async_sessionmaker[AsyncSession], service: PushService, name: str, *,
                 email: bool = True, email_consent: bool = True, subscribed: bool = False, push_consent: bool = False,
                 invalid: bool = False) -> int:
    profile_id = await add_profile(sessions, external_id=name, consent="granted" if email_consent else None)
    if not email:
        async with sessions.begin() as session:
            await session.execute(update(Profile).where(Profile.id == profile_id).values(email=None))
    if push_consent:
        await grant(sessions, profile_id, "push")
    if subscribed:
        row = await subscribe(sessions, profile_id, service.subscribe())
        if invalid:
            async with sessions.begin() as session:
                await session.execute(update(PushSubscription).where(PushSubscription.id == row).values(invalid_at=T0))
    return profile_id


async def planned(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.external_id, Delivery.channel, Send.channel)
                                     .join(Profile, Profile.id == Delivery.profile_id)
                                     .join(Send, Send.id == Delivery.send_id))
        found = {}
        for name, channel, send_channel in rows:
            assert channel == send_channel and name not in found
            found[name] = channel
        return found


async def test_each_profile_gets_the_first_channel_it_is_reachable_and_consented_on(
    both: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService, smtp: SmtpServer
) -> None:
    await person(sessions, service, "both", subscribed=True, push_consent=True)
    await person(sessions, service, "push-no-consent", subscribed=True)
    await person(sessions, service, "consent-no-subscription", push_consent=True)
    await person(sessions, service, "invalid-subscription", subscribed=True, push_consent=True, invalid=True)
    await person(sessions, service, "push-only", email=False, subscribed=True, push_consent=True)
    await person(sessions, service, "email-not-consented", email_consent=False)
    await person(sessions, service, "nothing", email_consent=False, subscribed=True)

    _, queue = await launch_in_process(both, load_campaign(CAMPAIGN, both), str(CAMPAIGN))

    assert queue.failed == []
    assert await planned(sessions) == {"both": "push", "push-only": "push", "push-no-consent": "email",
                                       "consent-no-subscription": "email", "invalid-subscription": "email"}
    assert sorted(smtp.handler.per_recipient()) == [
        "consent-no-subscription@example.com", "invalid-subscription@example.com", "push-no-consent@example.com"]
    assert len(service.received) == 2 and service.refused == []
    async with sessions() as session:
        assert set(await session.scalars(select(Delivery.status))) == {"sent"}


async def test_launching_again_after_reachability_changed_moves_nobody_and_adds_newcomers(
    both: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService, smtp: SmtpServer
) -> None:
    late = await person(sessions, service, "email-first")
    await person(sessions, service, "push-first", subscribed=True, push_consent=True)
    spec = load_campaign(CAMPAIGN, both)
    await launch_in_process(both, spec, str(CAMPAIGN))
    await grant(sessions, late, "push")
    await subscribe(sessions, late, service.subscribe())  # now reachable on push, but already planned for email
    await person(sessions, service, "newcomer", subscribed=True, push_consent=True)

    await launch_in_process(both, spec, str(CAMPAIGN))

    assert await planned(sessions) == {"email-first": "email", "push-first": "push", "newcomer": "push"}
    assert smtp.handler.per_recipient() == {"email-first@example.com": 1}
    assert sorted(service.per_endpoint.values()) == [1, 1]


async def test_consent_ignore_falls_back_on_addresses_alone(
    both: Settings, sessions: async_sessionmaker[AsyncSession], service: PushService, smtp: SmtpServer, tmp_path: Path
) -> None:
    await person(sessions, service, "push-no-consent", subscribed=True, email_consent=False)
    await person(sessions, service, "email-no-consent", email_consent=False)
    data = yaml.safe_load(CAMPAIGN.read_text())
    data["audience"]["consent"] = "ignore"
    path = tmp_path / "ignore.yaml"
    path.write_text(yaml.safe_dump(data))

    await launch_in_process(both, load_campaign(path, both), str(path))

    assert await planned(sessions) == {"push-no-consent": "push", "email-no-consent": "email"}


def write_campaign(root: Path, body: str) -> Path:
    path = root / "promo.yaml"
    path.write_text("name: promo\ntemplate: promo\n" + body)
    return path


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    for folder in ("promo", "promo.fa"):
        (tmp_path / "templates" / folder).mkdir(parents=True)
        for part in ("subject.txt", "body.html", "body.txt"):
            (tmp_path / "templates" / folder / part).write_text("Hi")
    (tmp_path / "templates" / "promo" / "push.json").write_text('{"title": "Hi", "body": "there"}')
    return tmp_path


def problems(path: Path, settings: Settings) -> list[str]:
    return campaign_problems(path, settings.model_copy(update={"templates_dir": path.parent / "templates"}))


def test_validation_names_the_channel_whose_part_a_locale_folder_lacks(templates: Path, settings: Settings) -> None:
    settings = with_push(settings)
    path = write_campaign(templates, "channels:\n  - email\n  - push\n")
    [problem] = problems(path, settings)
    assert problem.startswith(f"{path}:5 channels[1]: channel push needs its part: ")
    assert (f"{templates}/templates/promo.fa/push.json is missing: the folder for locale fa needs push.json "
            "for this channel") in problem
    one = write_campaign(templates, "channel: push\n")
    (templates / "templates" / "promo" / "push.json").unlink()
    assert [p.split(" ", 2)[:2] for p in problems(one, settings)] == [[f"{one}:2", "template:"]] * 2


@pytest.mark.parametrize(("body", "message"), [
    ("channel: email\nchannels: [push]\n", "give either `channel: email`"),
    ("", "give either `channel: email`"),
    ("channels: [push, push]\n", "listed twice"),
    ("channels: []\n", "at least 1"),
    ("channels: [fax]\n", "channels[0]"),
])
def test_a_channel_list_is_one_way_of_naming_channels(templates: Path, settings: Settings, body: str,
                                                       message: str) -> None:
    assert any(message in p for p in problems(write_campaign(templates, body), settings))


def test_a_push_campaign_is_refused_while_web_push_is_not_set_up(templates: Path, settings: Settings) -> None:
    path = write_campaign(templates, "channels: [email, push]\n")
    (templates / "templates" / "promo.fa" / "push.json").write_text('{"title": "x", "body": "y"}')
    [problem] = problems(path, settings)
    assert problem.startswith(f"{path}:3 channels[1]: web push is not set up: push.vapid_public_key, "
                              "ECRM_PUSH__VAPID_PRIVATE_KEY, push.subject missing; run `ecrm push keys`")
