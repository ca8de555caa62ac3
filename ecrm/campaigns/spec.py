"""The campaign file, version 1, as a pydantic model.

    name: welcome
    channel: email                 # or a fallback order: channels: [push, sms, email]
    template: welcome
    audience: {rules: [{field: locale, op: in, value: [en, fa, th]}]}
    schedule: now                  # or an ISO time with a zone: 2026-12-01T09:00:00+03:30
    sample: {first_name: Sara, traits: {points: 120}}   # what validation renders with
    sms: {max_parts: 3}            # channel sms: refused when the sample renders longer
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ecrm.segments.rules import Audience
from ecrm.types import ChannelKind


def paired(value: ChannelKind) -> ChannelKind:
    from ecrm.channels.registry import PAIRINGS  # the registry imports every adapter

    if value not in PAIRINGS:
        raise ValueError(f"no channel '{value}' yet; available: {', '.join(sorted(PAIRINGS))}")
    return value


class SampleProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    first_name: str = "Sam"
    last_name: str = "Sample"
    email: str = "sample@example.com"
    traits: dict[str, Any] = {}


class SmsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_parts: int | None = Field(None, ge=1, le=10)  # segments a text may take (each is billed)


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,99}$")
    description: str = ""
    channel: ChannelKind | None = None
    # each profile gets the first channel it is reachable and consented on (`campaigns.fallback`)
    channels: list[ChannelKind] | None = Field(None, min_length=1)
    template: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    audience: Audience = Audience()
    schedule: Literal["now"] | datetime = "now"
    sample: SampleProfile = SampleProfile()
    sms: SmsOptions | None = None

    @model_validator(mode="after")
    def _sms_options_on_sms(self) -> CampaignSpec:
        if self.sms is not None and ChannelKind.SMS not in self.kinds:
            raise ValueError("`sms:` options apply to a campaign sending SMS (channel: sms, or sms in channels:); "
                             "remove them")
        return self

    @field_validator("schedule")
    @classmethod
    def _aware(cls, value: Literal["now"] | datetime) -> Literal["now"] | datetime:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("the time needs a zone, e.g. 2026-12-01T09:00:00Z or +03:30")
        return value

    @property
    def kinds(self) -> tuple[ChannelKind, ...]:
        """The channels in fallback order; one for a `channel:` campaign."""
        return tuple(self.channels) if self.channels is not None else (self.channel or ChannelKind.EMAIL,)

    @property
    def kind(self) -> ChannelKind:
        """The first channel (the only one of a `channel:` campaign)."""
        return self.kinds[0]

    @field_validator("channel")
    @classmethod
    def _paired(cls, value: ChannelKind | None) -> ChannelKind | None:
        return paired(value) if value is not None else None

    @field_validator("channels")
    @classmethod
    def _each_paired_once(cls, value: list[ChannelKind] | None) -> list[ChannelKind] | None:
        for kind in value or []:
            paired(kind)
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a channel is listed twice; list each once, in the order to try them")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> CampaignSpec:
        if (self.channel is None) == (self.channels is None):
            raise ValueError("give either `channel: email` (one channel) or `channels: [push, sms, email]` "
                             "(each profile gets the first it is reachable and consented on), not both")
        return self

    def run_key(self) -> str:
        """The default key of a run: one run per scheduled time, and one `now` run."""
        return "now" if self.schedule == "now" else self.schedule.isoformat()
