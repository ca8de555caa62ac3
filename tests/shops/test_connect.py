"""`ecrm shop connect SHOP` prints the webhook URL from public_url, the topics and where the
secret goes, saying whether it is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.cli import main


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
