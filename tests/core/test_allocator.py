"""topt_core.allocator: freed memory kept in the heap while stage 1 trains on the CPU, given back after."""
import os
import platform

import numpy as np
import pytest

from srel_fixtures import FAST, CountingReporter, tiny_data
from topt_core import allocator

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="the policy exists on glibc only")
BLOCK = 96 * 2 ** 20               # above glibc's largest mmap threshold (32 MB): mmapped by default


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _touch_and_free() -> tuple[int, int]:
    """RSS with a freshly written BLOCK-sized array, and after freeing it."""
    a = np.ones(BLOCK // 8)
    held = _rss()
    del a
    return held, _rss()


@glibc
def test_freed_blocks_stay_during_training_and_go_back_after():
    held, freed = _touch_and_free()
    assert freed < held - BLOCK // 2                        # default: a big block is unmapped on free
    with allocator.keep_freed_memory() as heap:
        assert heap.active
        held, freed = _touch_and_free()
        assert freed > held - BLOCK // 4                    # kept for the next epoch
    assert _rss() < held - BLOCK // 2                       # malloc_trim gave it back
    held, freed = _touch_and_free()
    assert freed < held - BLOCK // 2                        # and the default policy is back


def test_not_wanted_or_not_glibc_changes_nothing(monkeypatch):
    with allocator.keep_freed_memory(wanted=False) as heap:
        assert not heap.active
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator._glibc() is None
    with allocator.keep_freed_memory() as heap:
        assert not heap.active


@pytest.mark.parametrize("device, n, need, avail, expected", [
    ("cpu", 5000, 10 ** 9, 8 * 10 ** 9, True),
    ("cpu", 5000, 10 ** 9, None, True),                     # unknown memory: the mode's check already passed
    ("cpu", 5000, 9 * 10 ** 9, 8 * 10 ** 9, False),         # the estimate would not fit
    ("cpu", 500, 10 ** 8, 8 * 10 ** 9, False),              # small layers: nothing to gain
    ("cuda:0", 5000, 10 ** 9, 8 * 10 ** 9, False),          # the GPU has its own caching allocator
])
def test_used_only_where_it_pays_and_fits(device, n, need, avail, expected):
    assert allocator.worth_it(device, n, need, avail, small_n=1000) is expected


@glibc
def test_training_says_so_and_gives_the_same_embeddings(monkeypatch):
    import topt_core.srel.train as T

    data = tiny_data(n=30)
    plain = T.train_srel(data, FAST.replace(attention="sparse")).embeddings
    monkeypatch.setattr(T, "SMALL_N", 10)                   # this tiny layer counts as large
    rep = CountingReporter()
    kept = T.train_srel(data, FAST.replace(attention="sparse", threads=1), rep).embeddings
    assert any("keeps freed memory" in m for m in rep.infos), rep.infos
    assert np.array_equal(plain, kept)
