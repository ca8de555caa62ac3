"""LruCache: bounded, forgets the least recently used entry, and `get` counts as a use."""

from __future__ import annotations

import pytest

from ecrm.lru import LruCache


def test_put_returns_the_value_and_get_finds_it() -> None:
    cache: LruCache[str, int] = LruCache(2)
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1
    assert cache.get("b") is None


def test_the_cache_never_holds_more_than_its_size() -> None:
    cache: LruCache[int, int] = LruCache(3)
    for i in range(10):
        cache.put(i, i * i)
        assert len(cache) == min(i + 1, 3)
    assert [cache.get(i) for i in range(10)] == [None] * 7 + [49, 64, 81]


def test_a_full_cache_forgets_the_least_recently_put_entry() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None
    assert (cache.get("b"), cache.get("c")) == (2, 3)


def test_get_makes_an_entry_recent_so_the_other_one_is_forgotten() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_putting_an_existing_key_replaces_its_value_and_makes_it_recent() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    assert len(cache) == 2
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (10, 3)


def test_a_cache_of_one_keeps_only_the_last_entry() -> None:
    cache: LruCache[str, int] = LruCache(1)
    cache.put("a", 1)
    cache.put("b", 2)
    assert len(cache) == 1
    assert (cache.get("a"), cache.get("b")) == (None, 2)


@pytest.mark.parametrize("size", [0, -1])
def test_a_cache_smaller_than_one_entry_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        LruCache[str, int](size)
