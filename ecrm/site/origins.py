"""Page origins as the browser's `Origin` header writes them: `scheme://host[:port]`, lowercase,
no path, the default port left out."""

from __future__ import annotations

from urllib.parse import urlsplit


def site_origin(value: str) -> str:
    """`value` as an origin, or ValueError saying what is wrong with it (for settings)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an origin such as https://shop.example")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port and port != default else "")
