"""Garbage collection for long-running processes (`ecrm worker`, an in-process launch, `ecrm serve`).

CPython's full collections scan every tracked object. A worker's heap is mostly what start-up
loaded (SQLAlchemy, Babel, Jinja, arq...), which lives as long as the process, while a batch in
flight keeps thousands of young objects alive just long enough to be promoted, so full
collections came often and took 10-20% of a worker's CPU in `bench.send`. `settle()` moves the
start-up heap out of the collector's sight and makes young collections rarer, so a batch's
short-lived objects die before they are promoted. Full collections still run, about once per
few hundred thousand messages, so cyclic garbage is still reclaimed.
"""

from __future__ import annotations

import gc

YOUNG = 20_000  # container allocations between young collections (CPython's default: 700)
MIDDLE = 50  # young collections per middle one (default 10)
OLD = 20  # middle collections per full one (default 10)


def settle() -> None:
    """Call once start-up is done, before the process starts sending."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
