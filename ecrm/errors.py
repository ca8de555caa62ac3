"""The exception tree of ecrm; every message is a sentence somebody can act on.

    EcrmError
    ├── ConfigError                 a setting is wrong: names the key and where it came from
    ├── UnsafeSettingsError         settings fit only a local try-out: refused outside --dev
    ├── UnreachableError            a server ecrm needs does not answer: names it and why
    ├── ProjectExistsError          `ecrm init DIR` would overwrite a project's files
    ├── SpecError                   a marketer's YAML is wrong: file, line, field
    │   └── CampaignSpecError       carries every problem of one file, not just the first
    ├── WorkerProcessError          a process ecrm started for a part of its work failed or died
    ├── TemplateError               a template is missing or does not render for a profile
    ├── SendError                   raised only by channel adapters
    │   ├── TransientSendError      try again later (outage, throttling, timeout)
    │   ├── PermanentSendError      never retry (address refused, message rejected)
    │   │   ├── AddressRejectedError   the address can never receive: marked on the profile
    │   │   └── RecipientOptedOutError the recipient opted out at the provider: consent withdrawn
    │   └── UncertainSendError      may have been sent: recorded as unknown, never retried
    ├── ApiError                    an HTTP request is wrong: status code and the field
    ├── WebhookError                a shop's webhook cannot be taken
    │   ├── WebhookSignatureError   not signed with our secret (401)
    │   └── WebhookPayloadError     a header or field is missing or wrong (400, names it)
    └── SmsTextError                a text that no SMS can carry (not valid Unicode / UTF-8)
"""

from __future__ import annotations

from dataclasses import dataclass


class EcrmError(Exception):
    """Base of every error ecrm raises on purpose."""


class ConfigError(EcrmError, ValueError):
    def __init__(self, key: str, source: str, problem: str) -> None:
        self.key, self.source, self.problem = key, source, problem
        super().__init__(f"{key} ({source}): {problem}")


class UnsafeSettingsError(EcrmError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UnreachableError(EcrmError):
    pass


class ProjectExistsError(EcrmError):
    pass


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a YAML file, located by line and dotted field path."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(EcrmError, ValueError):
    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CampaignSpecError(SpecError):
    pass


class SegmentSpecError(SpecError):
    pass


class WorkerProcessError(EcrmError):
    """A process started for part of a command's work (reading a large CSV import) failed, with
    its traceback, or ended without finishing, with its exit code."""


class TemplateError(EcrmError):
    def __init__(self, template: str, message: str, line: int | None = None) -> None:
        self.template, self.line = template, line
        where = f"{template}:{line}" if line else template
        super().__init__(f"template {where}: {message}")


class SendError(EcrmError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TransientSendError(SendError):
    """The provider could not take the message now; the same message may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """The provider refused this message for good; retrying would fail the same way."""


class AddressRejectedError(PermanentSendError):
    """The provider says this address can never receive on its channel (a phone number that is
    not valid, or not a mobile): the profile is marked so audiences skip it (`phone_invalid`)."""


class RecipientOptedOutError(PermanentSendError):
    """The recipient opted out at the provider (e.g. replied STOP): their consent on the channel
    is withdrawn, with `source` naming who said so (`twilio:21610`)."""

    def __init__(self, reason: str, source: str) -> None:
        super().__init__(reason)
        self.source = source


class UncertainSendError(SendError):
    """The message may have reached the provider (an adapter failed after handing it over, or
    in a way nobody foresaw); resending could double it, so it is recorded `unknown`."""


class ApiError(EcrmError):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.field = status, field
        super().__init__(message)


class SmsTextError(EcrmError, ValueError):
    """A text that cannot be sent as an SMS at all: not valid Unicode, or bytes that are not UTF-8."""


class WebhookError(EcrmError):
    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class WebhookSignatureError(WebhookError):
    """The request is not signed with the shop's secret: nothing of it is stored."""


class WebhookPayloadError(WebhookError):
    """A header or payload field a connector needs is missing or not what the shop sends."""
