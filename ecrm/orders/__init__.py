"""Orders from shops: the `orders` table, money kept exact, and the order ingest."""
