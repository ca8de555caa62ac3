"""Stage 5, transport: one adapter per provider behind the `Channel` interface."""
