"""Stage 7, back in: what people did with a message (opened, clicked, replied, unsubscribed,
converted) flows back into deliveries and profiles.

In: unsubscribe links now; provider webhooks, tracking and shop orders later."""
