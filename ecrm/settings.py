"""Settings: `config/ecrm.yaml`, overridden by `ECRM_*` environment variables, validated once.

This is the only module that reads the environment. A nested key is overridden with a double
underscore: `ECRM_SMTP__PORT=2525` sets `smtp.port`; `ECRM_DATABASE_URL` sets `database_url`.
Every error names the key and where its value came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from ecrm.errors import ConfigError, SpecError
from ecrm.orders.money import is_currency
from ecrm.priority import Policy
from ecrm.push.settings_checks import push_pair, push_private_key, push_public_key, push_subject
from ecrm.site.origins import site_origin
from ecrm.yamlfile import dotted, load_yaml

DEFAULT_CONFIG = Path("config/ecrm.yaml")
ENV_PREFIX = "ECRM_"
NOT_SETTINGS = ("ECRM_CONFIG", "ECRM_DEBUG")  # read by the command line, not settings
MAX_RATE, MAX_RATE_PLACES = Decimal(10) ** 9, 9


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1025, ge=1, le=65535)
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = Field(30.0, gt=0)
    connections: int = Field(8, ge=1, le=256)


class EmailSettings(_Section):
    from_address: str = "news@shop.example"
    from_name: str = "Example Shop"
    message_id_domain: str = "shop.example"
    unsubscribe_mailto: str | None = None
    # Bodies go as written (7bit, or 8bit UTF-8 with BODY=8BITMIME, RFC 6152) when their lines
    # fit; false: always quoted-printable or base64, e.g. when a relay signs with DKIM and a
    # later hop without 8BITMIME would convert the body and break the signature.
    eight_bit: bool = True
    # Bulk-sender headers (ecrm.render.bulk_headers): List-Id is `"Campaign" <slug.DOMAIN>`,
    # DOMAIN defaulting to message_id_domain; Feedback-ID ends with this sender id (Gmail: 5-15
    # characters, the same on every email).
    list_id_domain: str | None = None
    feedback_sender_id: str = Field("ecrm-mail", pattern=r"^[A-Za-z0-9._-]{5,15}$")


class DkimSettings(_Section):
    """One From domain's DKIM key (ecrm.dkim): the key from `key_file`, or `private_key` itself
    (e.g. from the environment); `rsa-sha256` keys are PEM, `ed25519-sha256` keys base64."""

    selector: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"
    key_file: Path | None = None
    private_key: SecretStr | None = None  # kept out of reprs and logs

    @model_validator(mode="after")
    def _one_key(self) -> DkimSettings:
        if (self.key_file is None) == (self.private_key is None):
            raise ValueError("give either key_file or private_key")
        return self


class SendSettings(_Section):
    batch_size: int = Field(1000, ge=1, le=10_000)
    max_tries: int = Field(8, ge=1)
    retry_delay: float = Field(30.0, ge=0)
    # Seconds a send job may run. If its worker dies, arq hands the job to another worker
    # about 10 s after this has passed (the job's in-progress mark expires).
    job_timeout: float = Field(300.0, ge=1)
    # How far `ecrm worker` (the campaigns' worker) lowers its own CPU priority (nice). Under
    # contention the API, the transactional worker and PostgreSQL run first, so a receipt or an
    # entry event does not queue behind bulk sends; alone on the cores, a campaign runs as fast.
    campaign_nice: int = Field(5, ge=0, le=19)
    # ... and its Linux scheduling policy (`ecrm.priority`): normal, batch (SCHED_BATCH) or idle
    # (SCHED_IDLE: it runs only on cores nothing else wants, so a message preempts it at once).
    campaign_policy: Policy = Policy.NORMAL
    # The nice `ecrm worker --transactional` raises itself to, so a message's job runs as soon as
    # it is woken, ahead of the campaigns (below 0 needs root or CAP_SYS_NICE; without it, it logs
    # one line and keeps its own).
    transactional_nice: int = Field(-10, ge=-20, le=0)


class ApiSettings(_Section):
    # The nice `ecrm serve` raises itself to (0: its own; below 0 needs root or CAP_SYS_NICE).
    # Off by default: above PostgreSQL's backends on the same cores, a busy API could slow ingest.
    nice: int = Field(0, ge=-20, le=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)  # larger request bodies get 413
    max_traits_bytes: int = Field(64 * 1024, ge=256)  # a profile's traits as JSON, after a merge: 422 beyond
    max_batch_bytes: int = Field(16 * 1024 * 1024, ge=1024)  # a batch route's body (1,000 items): 413 beyond


class PushSettings(_Section):
    """Web push VAPID keys (`ecrm push keys` makes them, `ecrm.push.vapid`): the public key in
    config, the private key from the environment (ECRM_PUSH__VAPID_PRIVATE_KEY), and `subject`,
    the contact push services may write to (mailto: or https: URL)."""

    vapid_public_key: str | None = None
    vapid_private_key: SecretStr | None = None  # kept out of reprs and logs
    subject: str | None = None
    # sending (`ecrm.channels.push.webpush`): how long a push service keeps an undelivered
    # notification (TTL, seconds), its default Urgency, HTTP connections and a request's timeout
    ttl: int = Field(86_400, ge=0, le=2_419_200)
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    connections: int = Field(32, ge=1, le=1000)
    timeout: float = Field(10.0, gt=0)

    @field_validator("vapid_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        return push_public_key(value) if value else None

    @field_validator("vapid_private_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        return push_private_key(value) if value and value.get_secret_value() else None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        return push_subject(value) if value else None

    @model_validator(mode="after")
    def _pair(self) -> PushSettings:
        push_pair(self.vapid_public_key, self.vapid_private_key)
        return self


class MoneySettings(_Section):
    """Money metrics that name no currency (`{metric: total_spent, op: gt, value: 100}`) are in
    `base_currency`; an order in another currency counts at `rates[code]` units of the base
    currency per unit (exact decimals, e.g. "0.000024"), and not at all without a rate."""

    base_currency: str | None = None
    rates: dict[str, Decimal] = {}

    @field_validator("base_currency")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and not is_currency(value):
            raise ValueError(f"'{value}' is not an ISO 4217 currency code, e.g. EUR")
        return value

    @field_validator("rates")
    @classmethod
    def _rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in rates.items():
            if not is_currency(code):
                raise ValueError(f"'{code}' is not an ISO 4217 currency code")
            if not (0 < rate < MAX_RATE) or -rate.normalize().as_tuple().exponent > MAX_RATE_PLACES:  # type: ignore[operator]
                raise ValueError(f"the rate of {code} must be above 0 and below {MAX_RATE}, with at most "
                                 f"{MAX_RATE_PLACES} decimals")
        return rates


class TwilioSettings(_Section):
    """SMS through Twilio's Messages API (`ecrm.channels.sms.twilio`): the account, the auth
    token from the environment (ECRM_TWILIO__AUTH_TOKEN), and the sender: a `from_number` in
    E.164 or a `messaging_service_sid`. `api_url` is Twilio's; tests and benchmarks point it at
    the local peer (`ecrm.peers.twilio_sink`)."""

    account_sid: str = Field("AC00000000000000000000000000000000", pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr | None = None  # kept out of reprs and logs
    from_number: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$")
    api_url: str = Field("https://api.twilio.com", pattern=r"^https?://[^/?#]+$")
    connections: int = Field(32, ge=1, le=512)  # requests in flight per process
    timeout: float = Field(15.0, gt=0)
    # What a HELP text message is answered with (TwiML, `POST /webhooks/twilio/inbound`)
    help_text: str = Field("Example Shop: reply STOP to stop these texts, START to get them again.",
                           min_length=1, max_length=1600)


class ShopSettings(_Section):
    """Shop webhook secrets (ecrm.shops), from the environment: ECRM_SHOPS__SHOPIFY_SECRET (the
    Shopify app's client secret), ECRM_SHOPS__WOOCOMMERCE_SECRET (the WooCommerce webhooks' secret).
    A shop whose secret is unset gets 401 on every webhook."""

    shopify_secret: SecretStr | None = None  # kept out of reprs and logs
    woocommerce_secret: SecretStr | None = None


class SiteSettings(_Section):
    """The site script (`/t.js`, ecrm.site): its public key, the page origins allowed to send
    events (`https://shop.example`; a comma-separated list in ECRM_SITE__ALLOWED_ORIGINS), the
    secret a shop's server signs `identify` external ids with, and the collect endpoint's bounds."""

    key: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,64}$")
    allowed_origins: tuple[str, ...] = ()
    identify_secret: SecretStr | None = None
    max_body_bytes: int = Field(8 * 1024, ge=512, le=64 * 1024)
    requests_per_minute: int = Field(120, ge=1)  # per client address, per API process

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(site_origin(origin) for origin in value) if isinstance(value, list | tuple) else value


class Settings(_Section):
    database_url: str = "sqlite+aiosqlite:///./ecrm.db"
    redis_url: str | None = None
    templates_dir: Path = Path("templates")
    segments_dir: Path = Path("segments")  # named segments, segments/NAME.yaml
    segment_refresh_minutes: int = Field(5, ge=1, le=60)  # whole segments refreshed (entered/exited events)
    segment_rank_minutes: int = Field(60, ge=0, le=1440)  # RFM rules read a ranking at most this old; 0: rank each time
    public_url: str = "http://127.0.0.1:8080"
    secret_key: str = Field("dev-only-secret-change-me", min_length=16)
    smtp: SmtpSettings = SmtpSettings()
    email: EmailSettings = EmailSettings()
    send: SendSettings = SendSettings()
    dkim: dict[str, DkimSettings] = {}  # From domain -> its key; no entry: not signed by ecrm
    api: ApiSettings = ApiSettings()
    push: PushSettings = PushSettings()
    money: MoneySettings = MoneySettings()
    twilio: TwilioSettings = TwilioSettings()
    shops: ShopSettings = ShopSettings()
    site: SiteSettings = SiteSettings()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_dsn(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis:// URL, or nothing to run jobs in-process")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(path: Path | None = None, environ: Mapping[str, str] = os.environ,
                  **overrides: Any) -> Settings:
    """Read the YAML file (if any), apply `ECRM_*` variables and keyword overrides, validate."""
    path = path or Path(environ.get("ECRM_CONFIG", DEFAULT_CONFIG))
    data, sources = _from_file(path)
    for key, value in _from_env(environ).items():
        _set(data, key, value)
        sources[key] = f"env {ENV_PREFIX}{'__'.join(key).upper()}"
    for name, value in overrides.items():
        data[name] = value
        sources[(name,)] = "argument"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = tuple(str(p) for p in err["loc"])
        raise ConfigError(dotted(key), _source_of(sources, key, path), _explain(err["type"], err["msg"])) from exc


def environment(dotenv: Path = Path(".env"), environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The process environment over the variables of a `.env` file (what `ecrm init` writes
    there), if it exists: a variable set in the process wins."""
    from dotenv import dotenv_values

    from_file = dotenv_values(dotenv) if dotenv.is_file() else {}
    return {**{k: v for k, v in from_file.items() if v is not None}, **environ}


def _from_file(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    if not path.exists():
        return {}, {}
    try:
        doc = load_yaml(path)
    except SpecError as exc:
        raise ConfigError("(file)", str(path), str(exc.problems[0])) from exc
    if doc.data is None:
        return {}, {}
    if not isinstance(doc.data, dict):
        raise ConfigError("(file)", str(path), "expected a mapping of settings at the top level")
    sources = {tuple(str(p) for p in k): f"{path}:{line}" for k, line in doc.lines.items() if k}
    return doc.data, sources


def _from_env(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    fields = set(Settings.model_fields)
    out = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        key = tuple(name[len(ENV_PREFIX):].lower().split("__"))
        if key[0] not in fields:
            raise ConfigError(name, "environment", f"unknown setting; known: {', '.join(sorted(fields))}")
        out[key] = value
    return out


def _set(data: dict[str, Any], key: tuple[str, ...], value: str) -> None:
    for part in key[:-1]:
        data = data.setdefault(part, {})
    data[key[-1]] = value


def _source_of(sources: dict[tuple[str, ...], str], key: tuple[str, ...], path: Path) -> str:
    while key:
        if key in sources:
            return sources[key]
        key = key[:-1]
    return "default"


def _explain(kind: str, msg: str) -> str:
    return "unknown setting (check its spelling)" if kind == "extra_forbidden" else msg
