"""Stage 1, events in from shops: Shopify and WooCommerce webhooks.

A webhook is verified and stored as it came (`received_webhooks`) before it is acknowledged;
a job then maps it (one connector per shop, `registry.CONNECTORS`) to profile upserts with the
marketing consent the shop reports, orders and cart events, and writes them through stage 1's
own ingest functions.
"""
