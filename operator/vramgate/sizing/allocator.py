"""PyTorch's CUDA caching allocator, replayed: how much memory a sequence of tensor allocations reserves.

Engines that read used memory from the driver after a profile run (TGI's warm-up) count what the allocator
keeps reserved, not only the largest set of live tensors: a freed block is reused only by a request it can
hold, and a block a collective recorded on another stream is not reused until that stream's work is done.
The rules, from c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.0-2.4, default settings):

- requests round up to 512 bytes; those of 1 MiB or less come from a separate small pool (not replayed:
  their 2 MiB segments are noise next to a forward pass's tensors);
- a request takes the smallest free block that holds it (best fit), and a block more than 1 MiB larger is
  split, the request at its start;
- with no free block large enough, a new segment is reserved: 20 MiB below 10 MiB, else the request
  rounded up to 2 MiB; segments are never merged, freed neighbours within a segment are;
- a freed block recorded on another stream (`recorded`) comes back only once that stream's events
  complete. The replay takes the case where the CPU runs ahead of the GPU through the whole pass, so it
  never does: the bound.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from vramgate.sizing.units import MIB, ceil_div

_ROUND = 512
_SMALL_REQUEST = MIB
_MIN_SPLIT_REMAINDER = MIB
_SMALL_SEGMENT_LIMIT = 10 * MIB
_SMALL_SEGMENT = 20 * MIB
_SEGMENT_ROUND = 2 * MIB


def held_block_bytes(size_bytes: int, max_split_bytes: int | None = None) -> int:
    """What `torch.cuda.memory_allocated` counts for a tensor that gets a segment of its own: the whole
    block it takes. A request of 10 MiB or more reserves its size rounded up to 2 MiB and keeps the
    rounding unless more than 1 MiB is left to split off; with `max_split_size_mb` set, a block of that
    size or more is never split, so it keeps the rounding whatever it is (should_split and
    get_allocation_size in c10/cuda/CUDACachingAllocator.cpp). Smaller requests split what they do not use."""
    size = max(_ROUND, ceil_div(size_bytes, _ROUND) * _ROUND)
    if size < _SMALL_SEGMENT_LIMIT:
        return size
    segment = ceil_div(size, _SEGMENT_ROUND) * _SEGMENT_ROUND
    unsplit = max_split_bytes is not None and size >= max_split_bytes
    return segment if unsplit or segment - size <= _MIN_SPLIT_REMAINDER else size


@dataclass(eq=False)
class _Block:
    segment: int
    offset: int
    size: int
    free: bool = True
    prev: _Block | None = None
    next: _Block | None = None

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


@dataclass
class CachingAllocator:
    """One stream's large pool; `allocate` and `free` name tensors, as the code being replayed does."""

    reserved_bytes: int = 0
    allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    peak_allocated_bytes: int = 0
    _free: list[tuple[tuple[int, int, int], _Block]] = field(default_factory=list)
    _live: dict[str, _Block] = field(default_factory=dict)
    _segments: int = 0

    def allocate(self, name: str, size_bytes: int) -> None:
        size = max(_ROUND, ceil_div(size_bytes, _ROUND) * _ROUND)
        if size <= _SMALL_REQUEST:
            return
        at = bisect.bisect_left(self._free, ((size, -1, -1),))
        if at < len(self._free):
            block = self._free.pop(at)[1]
        else:
            segment = (
                _SMALL_SEGMENT
                if size < _SMALL_SEGMENT_LIMIT
                else ceil_div(size, _SEGMENT_ROUND) * _SEGMENT_ROUND
            )
            self._segments += 1
            block = _Block(self._segments, 0, segment)
            self.reserved_bytes += segment
            self.peak_reserved_bytes = max(self.peak_reserved_bytes, self.reserved_bytes)
        if block.size - size > _MIN_SPLIT_REMAINDER:
            rest = _Block(block.segment, block.offset + size, block.size - size, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._insert(rest)
        block.free = False
        self._live[name] = block
        self.allocated_bytes += block.size
        self.peak_allocated_bytes = max(self.peak_allocated_bytes, self.allocated_bytes)

    def free(self, name: str, recorded: bool = False) -> None:
        """Free a tensor; a `recorded` one stays out of reach for the rest of the replay."""
        block = self._live.pop(name, None)
        if block is None:
            return
        self.allocated_bytes -= block.size
        if recorded:
            return
        block.free = True
        before, after = block.prev, block.next
        if before is not None and before.free:
            self._remove(before)
            before.size += block.size
            before.next = after
            if after is not None:
                after.prev = before
            block = before
        if after is not None and after.free:
            self._remove(after)
            block.size += after.size
            block.next = after.next
            if after.next is not None:
                after.next.prev = block
        self._insert(block)

    def rename(self, name: str, new_name: str) -> None:
        """The same tensor under the name the next step of the code knows it by."""
        if name in self._live:
            self._live[new_name] = self._live.pop(name)

    def _insert(self, block: _Block) -> None:
        bisect.insort(self._free, (block.key, block))

    def _remove(self, block: _Block) -> None:
        self._free.pop(bisect.bisect_left(self._free, (block.key,)))


@dataclass(frozen=True)
class ForwardReplay:
    """What a forward pass reserved at most, and its most live bytes at once."""

    reserved_bytes: int
    live_bytes: int


def replay_layers(pool: CachingAllocator, layer: Callable[[int], None], layers: int) -> int:
    """Run `layer(index)` for each of `layers` decoder layers. Layers repeat: once three in a row have grown
    the peak reservation by the same amount, the rest are taken to grow it by that amount too, and that
    growth is returned (the pool has replayed only the layers before)."""
    reserved_after: list[int] = []
    for index in range(layers):
        layer(index)
        reserved_after.append(pool.peak_reserved_bytes)
        growth = {later - earlier for earlier, later in itertools.pairwise(reserved_after[-4:])}
        if len(reserved_after) >= 4 and len(growth) == 1:
            return (layers - 1 - index) * growth.pop()
    return 0
