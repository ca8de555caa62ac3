"""Stage 3, what and when: campaigns written in YAML, validated, launched as runs.

In: a campaign file. Out: a run whose recipients are queued in batches for the send jobs."""
