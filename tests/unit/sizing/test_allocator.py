"""The caching allocator replay: best fit, splits, merges, segment sizes and recorded blocks, with figures
computed by hand from c10/cuda/CUDACachingAllocator.cpp's rules."""

from __future__ import annotations

from vramgate.sizing.allocator import CachingAllocator, held_block_bytes
from vramgate.sizing.units import MIB


def test_a_freed_block_is_split_for_a_smaller_request_and_the_rest_serves_only_what_fits() -> None:
    pool = CachingAllocator()
    pool.allocate("a", 100 * MIB)
    pool.free("a")
    pool.allocate("b", 60 * MIB)  # the first 60 MiB of a's segment
    pool.allocate("c", 50 * MIB)  # the 40 MiB left is too small: a segment of its own
    assert pool.reserved_bytes == 150 * MIB
    assert pool.peak_allocated_bytes == 110 * MIB


def test_freed_neighbours_merge_back_into_one_block() -> None:
    pool = CachingAllocator()
    pool.allocate("a", 100 * MIB)
    pool.free("a")
    pool.allocate("b", 40 * MIB)
    pool.allocate("c", 40 * MIB)  # splits the 60 MiB rest: 20 MiB stay free
    pool.free("b")
    pool.free("c")
    pool.allocate("d", 100 * MIB)  # the whole segment again
    assert pool.reserved_bytes == pool.peak_reserved_bytes == 100 * MIB


def test_the_smallest_block_that_holds_a_request_serves_it() -> None:
    pool = CachingAllocator()
    for name, size in (("big", 80), ("small", 30), ("medium", 50)):
        pool.allocate(name, size * MIB)
    for name in ("big", "small", "medium"):
        pool.free(name)
    pool.allocate("x", 45 * MIB)  # medium's 50 MiB block, split: 5 MiB left
    pool.allocate("y", 70 * MIB)  # big's
    pool.allocate("z", 30 * MIB)  # small's
    assert pool.reserved_bytes == 160 * MIB


def test_segments_round_to_2_mib_and_requests_under_10_mib_take_20() -> None:
    pool = CachingAllocator()
    pool.allocate("tiny", MIB)  # the small pool: not replayed
    pool.allocate("large", 11 * MIB + 1)
    pool.allocate("small", 5 * MIB)
    assert pool.reserved_bytes == 12 * MIB + 20 * MIB
    pool.allocate("rest", 15 * MIB)  # the small request's segment holds it beside
    assert pool.reserved_bytes == 32 * MIB


def test_a_block_recorded_on_another_stream_is_not_reused() -> None:
    pool = CachingAllocator()
    pool.allocate("output", 64 * MIB)
    pool.free("output", recorded=True)
    pool.allocate("next", 64 * MIB)
    assert pool.reserved_bytes == 128 * MIB
    assert pool.allocated_bytes == 64 * MIB


def test_a_weight_keeps_its_segments_rounding_unless_over_1_mib_can_split_off() -> None:
    # 85 MiB reserves 86 MiB; the 1 MiB left is not more than 1 MiB, so the tensor holds all 86
    assert held_block_bytes(85 * MIB) == 86 * MIB
    # 42.5 MiB reserves 44 MiB and splits off 1.5 MiB; 17.5 MiB holds 18 MiB (0.5 MiB left)
    assert held_block_bytes(85 * MIB // 2) == 85 * MIB // 2
    assert held_block_bytes(35 * MIB // 2) == 18 * MIB
    # Below 10 MiB the 20 MiB segment splits; a whole number of 2 MiB holds exactly itself
    assert held_block_bytes(5 * MIB) == 5 * MIB
    assert held_block_bytes(112 * MIB) == 112 * MIB


def test_with_max_split_size_a_block_from_that_size_on_is_never_split() -> None:
    assert held_block_bytes(85 * MIB // 2, max_split_bytes=20 * MIB) == 44 * MIB
    # under the limit the usual rule: 12.5 MiB in a 14 MiB segment splits off 1.5 MiB
    assert held_block_bytes(25 * MIB // 2, max_split_bytes=20 * MIB) == 25 * MIB // 2
