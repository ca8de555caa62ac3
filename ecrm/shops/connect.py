"""What `ecrm shop connect SHOP` prints: the webhook URL, the topics to subscribe and where the
secret goes, for a shop developer to follow step by step."""

from __future__ import annotations

from ecrm.settings import Settings
from ecrm.shops.registry import CONNECTORS

STEPS = {
    "shopify": [
        "In the Shopify Partner Dashboard (or Settings > Apps > Develop apps), open your app.",
        "Subscribe each topic above to the webhook URL, format JSON (shopify.app.toml: [[webhooks.subscriptions]] "
        "with topics and uri; or the webhookSubscriptionCreate GraphQL mutation).",
        "customers/redact is a mandatory compliance webhook: set it under the app's compliance webhooks.",
        "Copy the app's client secret (API secret key): Shopify signs every webhook with it.",
    ],
    "woocommerce": [
        "In WordPress: WooCommerce > Settings > Advanced > Webhooks > Add webhook, once per topic above.",
        "Status Active, Delivery URL the webhook URL, API version WP REST API Integration v3.",
        "Give every webhook the same Secret, a long random string (e.g. `openssl rand -hex 32`).",
        "Saving sends an unsigned ping (webhook_id=N): ecrm answers it 200 and stores nothing.",
    ],
}


def webhook_url(settings: Settings, provider: str) -> str:
    return f"{settings.public_url.rstrip('/')}/webhooks/{provider}"


def connect_steps(settings: Settings, provider: str) -> list[str]:
    """The lines to print for `provider` (a key of CONNECTORS)."""
    connector = CONNECTORS[provider](settings)
    configured = "set" if connector.secret else "NOT set yet"
    lines = [f"Webhook URL: {webhook_url(settings, provider)}", "", "Topics:"]
    lines += [f"  {topic}" for topic in connector.topics]
    lines += ["", "Steps:"] + [f"  {n}. {step}" for n, step in enumerate(STEPS.get(provider, []), 1)]
    lines += ["", "Secret: put it in the environment of `ecrm serve` and `ecrm worker`, never in config files:",
              f"  {connector.secret_setting}=<the secret>   (currently {configured})",
              "Then test with a real event; failed mappings are listed in received_webhooks "
              "and `ecrm shop retry` maps them again."]
    if not settings.public_url.startswith("https://"):
        lines.append(f"Warning: public_url {settings.public_url} is not HTTPS; shops deliver only to https:// URLs.")
    return lines
