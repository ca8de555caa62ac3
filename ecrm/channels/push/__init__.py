"""Web push adapters (RFC 8030 push services)."""
