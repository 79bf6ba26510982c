"""The caches' bounds: by count (``LRU``) and by bytes (``SizedLRU``, which the whole-context
and window-answer caches are)."""

from __future__ import annotations

from projections.caches import LRU, SizedLRU


def test_a_sized_cache_keeps_its_bytes_under_the_bound_dropping_the_least_recent() -> None:
    cache: SizedLRU[str, bytes] = SizedLRU(10, len)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now "b" is the least recently used
    cache.put("c", b"cccc")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"aaaa", None, b"cccc")
    cache.put("a", b"a")  # a smaller value in place of a larger one frees room
    cache.put("d", b"dddd")
    assert [cache.get(k) for k in "acd"] == [b"a", b"cccc", b"dddd"]
    cache.put("e", b"e" * 11)  # larger than the whole bound: not kept, nothing dropped
    assert cache.get("e") is None
    assert len(cache) == 3


def test_a_sized_cache_refuses_what_was_read_before_it_forgot() -> None:
    cache: SizedLRU[str, bytes] = SizedLRU(10, len)
    cache.put("a", b"aaaaaaaaaa")
    generation = cache.generation
    cache.discard("a")
    cache.put("a", b"stale", generation)
    assert cache.get("a") is None
    cache.put("b", b"bbbbbbbbbb", cache.generation)
    assert cache.get("b") == b"bbbbbbbbbb"  # the discarded value's bytes were given back
    cache.clear()
    cache.put("c", b"cccccccccc")
    assert (len(cache), cache.get("c")) == (1, b"cccccccccc")


def test_a_counted_cache_keeps_its_capacity() -> None:
    cache: LRU[int, str] = LRU(2)
    for i in range(3):
        cache.put(i, str(i))
    assert [cache.get(i) for i in range(3)] == [None, "1", "2"]
