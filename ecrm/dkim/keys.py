"""`ecrm dkim keygen`: a new DKIM key pair, the private key written to a file only its owner can
read, and the DNS TXT record that publishes the public key (RFC 6376 3.6.1; Ed25519: RFC 8463)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import idna

from ecrm.errors import ConfigError

ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
RSA_BITS = 2048
_TXT_CHUNK = 255  # one character-string in a TXT record


@dataclass(frozen=True)
class DkimKey:
    algorithm: str  # as in the `dkim:` config: rsa-sha256 or ed25519-sha256
    private_key: bytes  # what the signer reads: PEM (RSA) or base64 (Ed25519)
    public_key: str  # base64, the record's p=

    def record_value(self) -> str:
        kind = "rsa" if self.algorithm == "rsa-sha256" else "ed25519"
        return f"v=DKIM1; k={kind}; p={self.public_key}"


def record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain.rstrip('.')}."


def zone_value(value: str) -> str:
    """The TXT value as quoted strings of at most 255 characters (a 2048-bit key is longer)."""
    return " ".join(f'"{value[i : i + _TXT_CHUNK]}"' for i in range(0, len(value), _TXT_CHUNK))


def generate(algorithm: str) -> DkimKey:
    """A new key pair; `algorithm` is `rsa` or `ed25519`."""
    from cryptography.hazmat.primitives import serialization  # optional dependency
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if algorithm == "ed25519":
        ed_key = ed25519.Ed25519PrivateKey.generate()
        seed = ed_key.private_bytes_raw()
        return DkimKey("ed25519-sha256", base64.b64encode(seed) + b"\n",
                       base64.b64encode(ed_key.public_key().public_bytes_raw()).decode())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    der = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey("rsa-sha256", pem, base64.b64encode(der).decode())


def write_private_key(path: Path, key: DkimKey) -> None:
    """Write the private key readable by its owner only (0600); never over an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(str(path), "dkim keygen", "the file exists; remove it or choose another --out") from exc
    except OSError as exc:
        raise ConfigError(str(path), "dkim keygen", f"cannot create it: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_key)


def keygen(domain: str, selector: str, algorithm: str, out: Path | None) -> list[str]:
    """Make a key for `domain` and `selector`, write it to `out` (default
    `<selector>.<domain>.dkim.key`), and return what to tell the operator."""
    try:
        domain = idna.encode(domain.strip().rstrip(".").lower(), uts46=True).decode()
    except idna.IDNAError as exc:
        raise ConfigError("DOMAIN", "dkim keygen", f"{domain!r} is not a domain name: {exc}") from exc
    if not selector or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in selector):
        raise ConfigError("SELECTOR", "dkim keygen", "use letters, digits, '-', '_' or '.'")
    path = out or Path(f"{selector}.{domain}.dkim.key")
    key = generate(algorithm)
    write_private_key(path, key)
    return [
        f"private key written to {path} (readable by you only)",
        "publish this DNS TXT record:",
        f"  name:  {record_name(domain, selector)}",
        f"  value: {zone_value(key.record_value())}",
        "then sign with it (config/ecrm.yaml):",
        f"  dkim:\n    {domain}:\n      selector: {selector}\n      algorithm: {key.algorithm}\n"
        f"      key_file: {path}",
    ]
