"""heap.settle: the start-up heap leaves the collector's sight, young collections get rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ecrm import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_what_exists_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    alive = len(gc.get_objects())
    heap.settle()
    assert gc.get_freeze_count() >= alive * 0.9  # what start-up left is out of the collector's sight
    assert gc.get_objects() == [] or len(gc.get_objects()) < alive * 0.1
    assert gc.get_threshold() == (heap.YOUNG, heap.MIDDLE, heap.OLD)
    assert gc.get_count()[0] < heap.YOUNG
