"""DKIM (RFC 6376): signing outgoing email per From domain, and making keys for it."""
