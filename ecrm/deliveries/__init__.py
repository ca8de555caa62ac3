"""Stage 6, outcome: one delivery row per (run, profile, channel), sent exactly once.

In: queued deliveries of a run batch. Out: messages handed to a channel, statuses recorded."""
