"""Which shops can send webhooks: one line per connector, its `provider` the key and the path
(`POST /webhooks/<provider>`). Adding a shop is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from ecrm.settings import Settings
from ecrm.shops.base import ShopConnector
from ecrm.shops.shopify import ShopifyConnector
from ecrm.shops.woocommerce import WooCommerceConnector

CONNECTORS: dict[str, Callable[[Settings], ShopConnector]] = {
    ShopifyConnector.provider: ShopifyConnector.from_settings,
    WooCommerceConnector.provider: WooCommerceConnector.from_settings,
}
