"""Stage 1, who: customer profiles, their per-channel consent and the events they did.

In: API calls, CSV imports, shop webhooks. Out: rows that segments select from."""
