"""Web push (RFC 8030 with VAPID, RFC 8292): application server keys and browser subscriptions."""
