"""`ecrm push keys` and the `push:` settings: a usable VAPID pair, checked when configured."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ecrm.errors import ConfigError
from ecrm.push import vapid
from ecrm.settings import load_settings
from tests.conftest import ROOT


def _push_keys(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECRM_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "ecrm", "push", "keys"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _jwt_like(private: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    claims = vapid.b64url_encode(json.dumps({"aud": "https://push.example.net",
                                             "sub": "mailto:a@shop.example"}).encode())
    header = vapid.b64url_encode(json.dumps({"typ": "JWT", "alg": "ES256"}).encode())
    signing_input = f"{header}.{claims}".encode()
    return signing_input, private.sign(signing_input, ec.ECDSA(hashes.SHA256()))


def test_push_keys_prints_a_pair_that_signs_and_verifies(tmp_path: Path) -> None:
    done = _push_keys(tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    private = re.search(r"^  ECRM_PUSH__VAPID_PRIVATE_KEY=([A-Za-z0-9_-]+)$", done.stdout, re.M)
    public = re.search(r"^    vapid_public_key: ([A-Za-z0-9_-]+)$", done.stdout, re.M)
    assert private and public, done.stdout
    assert len(vapid.b64url_decode(public[1])) == 65 and len(vapid.b64url_decode(private[1])) == 32
    signing_input, signature = _jwt_like(vapid.private_key_from(private[1]))
    vapid.public_key_from(public[1]).verify(signature, signing_input, ec.ECDSA(hashes.SHA256()))
    other = vapid.public_key_from(vapid.new_key_pair().public_key)
    with pytest.raises(InvalidSignature):
        other.verify(signature, signing_input, ec.ECDSA(hashes.SHA256()))
    assert list(tmp_path.iterdir()) == []  # nothing written: the private key is only printed


def test_two_runs_make_different_pairs() -> None:
    assert vapid.new_key_pair() != vapid.new_key_pair()


def test_a_configured_pair_loads_and_the_private_key_stays_secret(tmp_path: Path) -> None:
    keys = vapid.new_key_pair()
    config = tmp_path / "ecrm.yaml"
    config.write_text(f"push:\n  vapid_public_key: {keys.public_key}\n  subject: mailto:ops@shop.example\n")
    settings = load_settings(config, environ={"ECRM_PUSH__VAPID_PRIVATE_KEY": keys.private_key})
    assert settings.push.vapid_public_key == keys.public_key
    assert settings.push.vapid_private_key is not None
    assert settings.push.vapid_private_key.get_secret_value() == keys.private_key
    assert keys.private_key not in repr(settings)


def test_nothing_configured_is_fine(tmp_path: Path) -> None:
    push = load_settings(tmp_path / "none.yaml", environ={}).push
    assert (push.vapid_public_key, push.vapid_private_key, push.subject) == (None, None, None)


def _error(environ: dict[str, str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "none.yaml", environ=environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_private_key_from_another_pair_is_refused_naming_both_keys(tmp_path: Path) -> None:
    one, two = vapid.new_key_pair(), vapid.new_key_pair()
    message = _error({"ECRM_PUSH__VAPID_PUBLIC_KEY": one.public_key, "ECRM_PUSH__VAPID_PRIVATE_KEY": two.private_key},
                     tmp_path)
    assert "push.vapid_private_key and push.vapid_public_key are not one key pair" in message
    assert two.private_key not in message


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("VAPID_PUBLIC_KEY", "abc", "65-byte uncompressed P-256 point"),
    ("VAPID_PUBLIC_KEY", vapid.b64url_encode(b"\x04" + b"\x01" * 64), "not a point on the P-256 curve"),
    ("VAPID_PUBLIC_KEY", "BNc+/==", "not base64url"),
    ("VAPID_PRIVATE_KEY", vapid.b64url_encode(b"\x00" * 32), "out of range"),
    ("VAPID_PRIVATE_KEY", vapid.b64url_encode(b"\x01" * 31), "32-byte P-256 private key"),
    ("SUBJECT", "ops@shop.example", "mailto: or https: URL"),
    ("SUBJECT", "http://shop.example/contact", "mailto: or https: URL"),
    ("SUBJECT", "mailto:", "mailto: or https: URL"),
])
def test_bad_push_settings_are_refused_naming_the_key(name: str, value: str, expected: str, tmp_path: Path) -> None:
    message = _error({f"ECRM_PUSH__{name}": value}, tmp_path)
    assert message.startswith(f"push.{name.lower()} (env ECRM_PUSH__{name})")
    assert expected in message


@pytest.mark.parametrize("subject", ["mailto:ops@shop.example", "https://shop.example/contact"])
def test_a_subject_may_be_mailto_or_https(subject: str, tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.yaml", environ={"ECRM_PUSH__SUBJECT": subject}).push.subject == subject
