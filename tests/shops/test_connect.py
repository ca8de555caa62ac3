"""`ecrm shop connect SHOP` prints the webhook URL from public_url, the topics and where the
secret goes, saying whether it is set; `ecrm shop retry` maps stored webhooks again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecrm.cli import main
from ecrm.db import create_engine, session_factory
from ecrm.shops.base import Delivery
from ecrm.shops.store import record_webhook
from tests.shops.payloads import shopify_order, shopify_request


def test_connect_prints_the_url_topics_and_secret_steps(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECRM_PUBLIC_URL", "https://crm.shop.example/")
    monkeypatch.setenv("ECRM_SHOPS__WOOCOMMERCE_SECRET", "s3cret-value-not-printed")
    assert main(["--config", str(tmp_path / "none.yaml"), "shop", "connect", "woocommerce"]) == 0
    out = capsys.readouterr().out
    assert "Webhook URL: https://crm.shop.example/webhooks/woocommerce" in out
    assert all(f"  {topic}\n" in out for topic in ("order.created", "order.updated", "customer.created",
                                                    "customer.updated"))
    assert "ECRM_SHOPS__WOOCOMMERCE_SECRET=<the secret>   (currently set)" in out
    assert "s3cret-value-not-printed" not in out and "not HTTPS" not in out
    assert main(["--config", str(tmp_path / "none.yaml"), "shop", "connect", "shopify"]) == 0
    out = capsys.readouterr().out
    assert "https://crm.shop.example/webhooks/shopify" in out and "customers/redact" in out
    assert "ECRM_SHOPS__SHOPIFY_SECRET=<the secret>   (currently NOT set yet)" in out


def test_connect_refuses_an_unknown_shop(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["shop", "connect", "magento"])
    assert exit_.value.code == 2
    assert "invalid choice: 'magento'" in capsys.readouterr().err


def test_retry_maps_what_no_job_mapped_and_exits_1_while_some_fail(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setenv("ECRM_DATABASE_URL", database_url)
    config = ["--config", str(tmp_path / "none.yaml")]
    assert main([*config, "init"]) == 0

    async def store() -> None:
        engine = create_engine(database_url)
        long_ago = datetime(2026, 1, 1, tzinfo=UTC)
        async with session_factory(engine).begin() as session:
            for n, payload in enumerate([shopify_order(), shopify_order(id=2, currency="ZZZ")]):
                body, _ = shopify_request("orders/create", payload)
                await record_webhook(session, "shopify", Delivery(f"d-{n}", "orders/create", "x"), body.decode(),
                                     long_ago)
        await engine.dispose()

    asyncio.run(store())
    assert main([*config, "shop", "retry"]) == 1
    assert "mapped 1, failed 1 (see received_webhooks.error)" in capsys.readouterr().out
    assert main([*config, "shop", "retry"]) == 1
    assert "mapped 0, failed 1" in capsys.readouterr().out
