"""Vocabularies shared by every stage: channels, send sources, consent, responses. Delivery
statuses and their reasons live with their state machine, in `ecrm.deliveries.states`."""

from __future__ import annotations

from enum import StrEnum


class ChannelKind(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class SendSource(StrEnum):
    """What a send belongs to; `deliveries/` knows a source only by this kind and an id."""

    CAMPAIGN_RUN = "campaign_run"
    JOURNEY_STEP = "journey_step"
    TRANSACTIONAL = "transactional"


class ConsentState(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class ResponseKind(StrEnum):
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    UNSUBSCRIBED = "unsubscribed"
    CONVERTED = "converted"


class RunStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
