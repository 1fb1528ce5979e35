"""HMM_DMIRROR_EVICT_PFNS: evicting a chosen set of device pages with migrate_device_pfns().

The ioctl is the project's own (kmod/test_hmm_evict.c, hooked into the kernel's test_hmm.c
by harness/kmodext.py when the kernel has migrate_device_pfns()). It names pages by user
address plus a selection bitmap; the driver finds the device pages behind them and evicts
exactly those, whatever chunks they sit in, with no VMA lookup on the migration side. Each
case checks the data, the snapshot (device-local before, system after) and the device's
fault counts afterwards. The races run bounded loops against CPU faults, migrations, other
evictions and frees, then check every byte; one control case runs the free race through the
stock MIGRATE_TO_SYS path instead. The last two cases drive the stock eviction paths, which
use migrate_device_range(): releasing a device file and unloading the module.

Device reads here only ever touch pages already back in system memory: test_hmm's
invalidation clears one mirror entry past each invalidated range, and a device read that
then faults a page still on this device would make the simulated device copy from the
device-private page itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm, protocol
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, Prot, Transfer

if TYPE_CHECKING:
    from harness.guest.protocol import Variant

IOCTL = "HMM_DMIRROR_EVICT_PFNS"
BUILD_RECORD = f"{protocol.GUEST_BUILD}/kmodext.json"
CHUNK_PAGES = (256 << 20) // PAGE_SIZE  # DEVMEM_CHUNK_SIZE
RACE_SECONDS = 5.0
JOIN_SECONDS = 60.0

COHERENT_ONE_CHUNK = (
    "test_hmm maps a coherent device's memory as a single DEVMEM_CHUNK_SIZE (256 MiB) chunk "
    "at spm_addr_devN: a coherent device cannot have pages in two chunks")
COHERENT_NO_THP = (
    "a coherent device's only chunk holds no free huge folios, so migrating a THP to it asks "
    "for a second chunk at the same spm_addr_devN, which 7.2 refuses ('Conflicting mapping in "
    "same section') before test_hmm Oopses in dmirror_migrate_to_device (the known kernel "
    "bug test_hmm.py's huge-page cases report); there is no device THP to evict")


# ---------------------------------------------------------------------------------------
# Support


_support: dict[str, str | None] = {}


def build_record() -> dict[str, object] | None:
    try:
        with open(BUILD_RECORD) as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return None


def evict_unsupported(device: hmm.MirrorDevice) -> str | None:
    """Why `device` cannot take IOCTL, or None when it answers it."""
    if device.path not in _support:
        support = device.supported_ioctls()
        if IOCTL in support.not_in_header:
            record = build_record()
            why = record["reason"] if record else f"{BUILD_RECORD} is missing"
            _support[device.path] = f"{IOCTL} unsupported: the build left it out: {why}"
        elif IOCTL not in support.answered:
            _support[device.path] = (
                f"{IOCTL} unsupported: the loaded test_hmm.ko does not answer it though "
                "test_hmm_uapi.h defines it (a --module built without kmod/test_hmm_evict.c?)")
        else:
            _support[device.path] = None
    return _support[device.path]


@pytest.fixture
def evicting(dmirror: hmm.MirrorDevice) -> hmm.MirrorDevice:
    """The `dmirror` device, once it is known to answer HMM_DMIRROR_EVICT_PFNS."""
    reason = evict_unsupported(dmirror)
    if reason:
        pytest.skip(reason)
    return dmirror


# ---------------------------------------------------------------------------------------
# Pages that say which page they are


def tag_page(seed: int, index: int) -> bytes:
    return struct.pack("<Q", seed << 40 | index) * (PAGE_SIZE // 8)


def tagged(seed: int, first: int, count: int) -> bytes:
    return b"".join(tag_page(seed, first + i) for i in range(count))


def first_bad_page(actual: bytes, expected: bytes) -> str | None:
    if actual == expected:
        return None
    for offset in range(0, len(expected), PAGE_SIZE):
        got, want = actual[offset:offset + PAGE_SIZE], expected[offset:offset + PAGE_SIZE]
        if got != want:
            tag = struct.unpack_from("<Q", got)[0]
            return (f"page {offset // PAGE_SIZE} differs (starts with {tag:#x}, expected "
                    f"{struct.unpack_from('<Q', want)[0]:#x})")
    return f"{len(actual)} bytes where {len(expected)} were expected"


def check_memory(buffer: HmmBuffer, expected: bytes, what: str, first: int = 0) -> None:
    """Compare through the CPU (which brings device-private pages back)."""
    __tracebackhide__ = True
    problem = first_bad_page(buffer.contents(first * PAGE_SIZE, len(expected)), expected)
    assert problem is None, f"{what}: {problem}"


def runs(pages: Iterable[int]) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive page indices."""
    found: list[tuple[int, int]] = []
    for page in sorted(pages):
        if found and found[-1][0] + found[-1][1] == page:
            found[-1] = (found[-1][0], found[-1][1] + 1)
        else:
            found.append((page, 1))
    return found


# ---------------------------------------------------------------------------------------
# Where pages are


def on_device(variant: Variant, writable: bool = True) -> Prot:
    local = Prot.DEV_COHERENT_LOCAL if variant.is_coherent else Prot.DEV_PRIVATE_LOCAL
    return local | (Prot.WRITE if writable else Prot.READ)


def snapshot(device: hmm.MirrorDevice, buffer: HmmBuffer, first: int = 0,
             count: int | None = None) -> list[Prot]:
    count = buffer.npages - first if count is None else count
    assert device.snapshot(buffer.page(first), count, buffer.mirror_ptr).cpages == count
    return buffer.mirror_prots(count)


def check_places(device: hmm.MirrorDevice, buffer: HmmBuffer, expected: Callable[[int], Prot],
                 what: str, first: int = 0, count: int | None = None) -> None:
    __tracebackhide__ = True
    got = snapshot(device, buffer, first, count)
    wrong = [(first + i, prot, expected(first + i)) for i, prot in enumerate(got)
             if prot != expected(first + i)]
    assert not wrong, (f"{what}: {len(wrong)} of {len(got)} pages not where expected; first "
                       + ", ".join(f"page {p}: {g!r} not {e!r}" for p, g, e in wrong[:4]))


def check_device_reads(device: hmm.MirrorDevice, buffer: HmmBuffer, pages: Iterable[int],
                       seed: int, what: str) -> None:
    """The device no longer maps evicted pages: reading each run faults once, then the data
    is the CPU's."""
    __tracebackhide__ = True
    for first, count in runs(pages):
        done = device.read(buffer.page(first), count, buffer.mirror_ptr)
        assert done == Transfer(count, 1), f"{what}: device read of pages {first}+{count}"
        problem = first_bad_page(bytes(buffer.mirror[:count * PAGE_SIZE]),
                                 tagged(seed, first, count))
        assert problem is None, f"{what}: device read from page {first}: {problem}"


@contextmanager
def migrated(device: hmm.MirrorDevice, variant: Variant, npages: int,
             seed: int) -> Iterator[HmmBuffer]:
    """Tagged small pages, all on `device`. Without THP: one device folio per page (and
    coherent devices have no huge folios to give, see COHERENT_NO_THP)."""
    with HmmBuffer.anonymous(npages * PAGE_SIZE) as buffer:
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        buffer.fill(tagged(seed, 0, npages))
        assert device.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_places(device, buffer, lambda _: on_device(variant), "after migrating")
        yield buffer


def evict(device: hmm.MirrorDevice, buffer: HmmBuffer, pages: Iterable[int],
          first: int = 0, count: int | None = None) -> Transfer:
    count = buffer.npages - first if count is None else count
    return device.evict_pfns(buffer.page(first), count, hmm.selection_bitmap(pages, count))


# ---------------------------------------------------------------------------------------
# Selections


def test_evict_every_other_page(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    npages, seed = 256, 1
    with migrated(evicting, variant, npages, seed) as buffer:
        chosen = set(range(0, npages, 2))

        assert evict(evicting, buffer, chosen) == Transfer(len(chosen), 0)
        check_places(evicting, buffer,
                     lambda p: Prot.WRITE if p in chosen else on_device(variant),
                     "after evicting the even pages")
        check_device_reads(evicting, buffer, chosen, seed, "evicted pages")

        # Nothing of those is left on the device.
        assert evict(evicting, buffer, chosen) == Transfer(0, 0)
        check_memory(buffer, tagged(seed, 0, npages), "memory")


def test_evict_random_subset(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    npages, seed = 512, 2
    rng = random.Random(seed)
    with migrated(evicting, variant, npages, seed) as buffer:
        chosen = set(rng.sample(range(npages), npages // 3))

        assert evict(evicting, buffer, chosen) == Transfer(len(chosen), 0)
        check_places(evicting, buffer,
                     lambda p: Prot.WRITE if p in chosen else on_device(variant),
                     "after evicting a random third")
        check_device_reads(evicting, buffer, chosen, seed, "evicted pages")

        # No bitmap: every page of the range, of which only the rest is still on the device.
        done = evicting.evict_pfns(buffer.addr, npages)
        assert done == Transfer(npages - len(chosen), 0)
        check_places(evicting, buffer, lambda _: Prot.WRITE, "after evicting the rest")
        check_device_reads(evicting, buffer, set(range(npages)) - chosen, seed, "the rest")
        check_memory(buffer, tagged(seed, 0, npages), "memory")


def hmm_dmirror_chunks() -> list[tuple[int, int]]:
    """Pfn ranges of the private chunks test_hmm requested (all its devices), /proc/iomem."""
    chunks = []
    with open("/proc/iomem") as f:
        for line in f:
            span, _, name = line.partition(" : ")
            if name.strip() == "hmm_dmirror":
                start, end = (int(x, 16) for x in span.strip().split("-"))
                chunks.append((start // PAGE_SIZE, end // PAGE_SIZE))
    if any(start == 0 for start, _ in chunks):
        pytest.fail("/proc/iomem hides its addresses: the suite must run as root")
    return chunks


def device_pfns(addr: int, npages: int) -> list[int]:
    """Device-private pages show in pagemap as swap entries whose offset is the pfn."""
    pfns = []
    for entry in hmm.pagemap_entries(addr, npages):
        assert entry & hmm.PAGEMAP_SWAP, f"pagemap entry {entry:#x} is no device-private page"
        pfns.append((entry & hmm.PAGEMAP_PFN) >> 5)
    return pfns


def test_evict_across_chunks(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    if variant.is_coherent:
        pytest.skip(COHERENT_ONE_CHUNK)
    seed, window_pages = 3, 4096
    limit = CHUNK_PAGES + CHUNK_PAGES // 4
    # One reservation; `window` (with a mirror of window_pages) slides over it.
    window = HmmBuffer.anonymous(window_pages * PAGE_SIZE, reserve=limit * PAGE_SIZE)
    with window:
        base = window.addr
        window.mapping.madvise(base, limit * PAGE_SIZE, hmm.MADV_NOHUGEPAGE)
        chunk_of: list[int] = []
        # Fill the device until this buffer's pages sit in two chunks, a window at a time.
        while len(chunk_of) < limit:
            first = len(chunk_of)
            window.addr = base + first * PAGE_SIZE
            window.fill(tagged(seed, first, window_pages))
            with hmm.pages_left_behind_explained(evicting, window):
                done = evicting.migrate_to_device(window.addr, window_pages, window.mirror_ptr)
            assert done.cpages == window_pages, f"migrating pages {first}+{window_pages}"
            chunks = hmm_dmirror_chunks()
            for page, pfn in enumerate(device_pfns(window.addr, window_pages), first):
                owner = [i for i, (start, end) in enumerate(chunks) if start <= pfn <= end]
                assert owner, f"page {page} is at pfn {pfn:#x}, in no hmm_dmirror chunk"
                chunk_of.append(owner[0])
            counts = {c: chunk_of.count(c) for c in set(chunk_of)}
            if len(counts) >= 2 and min(counts.values()) >= 64:
                break
        npages = len(chunk_of)
        assert len(set(chunk_of)) >= 2, f"all {npages} pages landed in one chunk"

        # Every fifth page: non-contiguous pfns, from every chunk the buffer uses.
        chosen = set(range(0, npages, 5))
        assert {chunk_of[p] for p in chosen} == set(chunk_of)
        done = evicting.evict_pfns(base, npages, hmm.selection_bitmap(chosen, npages))
        assert done == Transfer(len(chosen), 0)

        for first in range(0, npages, window_pages):
            window.addr = base + first * PAGE_SIZE
            count = min(window_pages, npages - first)
            def expected(page: int, first: int = first) -> Prot:
                return Prot.WRITE if first + page in chosen else on_device(variant)

            check_places(evicting, window, expected, f"pages {first}+{count}", 0, count)
        # A few evicted pages of each chunk, through the device.
        for chunk in set(chunk_of):
            sample = [p for p in sorted(chosen) if chunk_of[p] == chunk][:16]
            for page in sample:
                window.addr = base + page * PAGE_SIZE
                done = evicting.read(window.addr, 1, window.mirror_ptr)
                assert done == Transfer(1, 1), f"device read of evicted page {page}"
                assert bytes(window.mirror[:PAGE_SIZE]) == tag_page(seed, page), \
                    f"device read of evicted page {page} (chunk {chunk})"
        window.addr = base
        for first in range(0, npages, window_pages):
            count = min(window_pages, npages - first)
            check_memory(window, tagged(seed, first, count), f"pages {first}+{count}", first)


def test_evict_skips_pages_not_on_the_device(evicting: hmm.MirrorDevice,
                                             variant: Variant) -> None:
    npages, seed = 64, 4
    with migrated(evicting, variant, npages, seed) as buffer:
        # 0-7 back by MIGRATE_TO_SYS, 8-15 by an eviction, 16-23 freed by munmap, 24-31
        # (device-private only) by CPU faults; the rest stays on the device.
        assert evicting.migrate_to_system(buffer.page(0), 8).cpages == 8
        assert evicting.evict_pfns(buffer.page(8), 8) == Transfer(8, 0)
        buffer.munmap(16 * PAGE_SIZE, 8 * PAGE_SIZE)
        away = set(range(0, 16))
        if not variant.is_coherent:
            check_memory(buffer, tagged(seed, 24, 8), "pages 24-31 faulted back", 24)
            away |= set(range(24, 32))
        still = set(range(16, npages)) - set(range(16, 24)) - away

        # One range over all of it, the unmapped hole included: only the rest moves.
        assert evicting.evict_pfns(buffer.addr, npages) == Transfer(len(still), 0)
        expected = Prot.WRITE
        check_places(evicting, buffer, lambda _: expected, "pages 0-15", 0, 16)
        check_places(evicting, buffer, lambda _: expected, "pages 24-63", 24, npages - 24)
        check_device_reads(evicting, buffer, still, seed, "the pages evicted last")

        # The freed pages alone map nothing; everything else, again, moves nothing.
        with pytest.raises(hmm.BadAddress):
            evicting.evict_pfns(buffer.page(16), 8)
        assert evicting.evict_pfns(buffer.addr, npages) == Transfer(0, 0)
        check_memory(buffer, tagged(seed, 0, 16), "pages 0-15")
        check_memory(buffer, tagged(seed, 24, npages - 24), "pages 24-63", 24)

        # All of it freed: nothing left to name.
        buffer.munmap()
        with pytest.raises(hmm.BadAddress):
            evicting.evict_pfns(buffer.addr, npages)


def test_evict_after_fork(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    """Parent and child share the device pages: an eviction from either moves them for both."""
    npages, seed = 64, 5
    with migrated(evicting, variant, npages, seed) as buffer:
        first_half = set(range(0, npages, 2))
        second_half = set(range(npages)) - first_half
        go_read, go_write = os.pipe()

        def child() -> None:
            os.read(go_read, 1)
            with hmm.MirrorDevice(variant.device_paths[0]) as mine:
                check_places(mine, buffer,
                             lambda p: Prot.READ if p in first_half
                             else on_device(variant, writable=False),
                             "in the child, after the parent's eviction")
                assert evict(mine, buffer, second_half) == Transfer(len(second_half), 0)
                check_places(mine, buffer, lambda _: Prot.READ, "in the child, after its own")
            check_memory(buffer, tagged(seed, 0, npages), "the child's memory")

        forked = hmm.ChildProcess(child)
        try:
            # After fork both sides map the pages read-only (copy on write).
            check_places(evicting, buffer, lambda _: on_device(variant, writable=False),
                         "after fork")
            assert evict(evicting, buffer, first_half) == Transfer(len(first_half), 0)
            check_places(evicting, buffer,
                         lambda p: Prot.READ if p in first_half
                         else on_device(variant, writable=False),
                         "in the parent, after its eviction")
        finally:
            os.write(go_write, b"g")
            forked.join()
            os.close(go_read)
            os.close(go_write)
        check_places(evicting, buffer, lambda _: Prot.READ, "in the parent, after the child's")
        check_device_reads(evicting, buffer, range(npages), seed, "the parent's pages")
        check_memory(buffer, tagged(seed, 0, npages), "the parent's memory")


def migrated_thps(device: hmm.MirrorDevice, variant: Variant, thp_size: int,
                  count: int, seed: int) -> HmmBuffer:
    if variant.is_coherent:
        pytest.skip(COHERENT_NO_THP)
    size = count * thp_size
    buffer = HmmBuffer.huge_aligned(size)
    try:
        buffer.fill(tagged(seed, 0, buffer.npages))
        assert device.migrate_to_device(buffer.addr, buffer.npages,
                                        buffer.mirror_ptr).cpages == buffer.npages
        places = set(snapshot(device, buffer))
        if places != {on_device(variant) | Prot.PMD}:
            pytest.skip(f"the kernel did not move the THPs as huge device folios: the snapshot "
                        f"shows {sorted(places)}")
    except BaseException:
        buffer.close()
        raise
    return buffer


def test_evict_thp(evicting: hmm.MirrorDevice, variant: Variant, thp_size: int) -> None:
    """One selected page of a huge device folio moves, and counts, the whole folio."""
    seed, per = 6, thp_size // PAGE_SIZE
    with migrated_thps(evicting, variant, thp_size, 2, seed) as buffer:
        npages = buffer.npages
        assert evict(evicting, buffer, [5]) == Transfer(per, 0)
        got = snapshot(evicting, buffer)
        assert set(got[:per]) <= {Prot.WRITE, Prot.WRITE | Prot.PMD}, \
            f"the first THP after evicting its page 5: {sorted(set(got[:per]))}"
        assert set(got[per:]) == {on_device(variant) | Prot.PMD}, \
            f"the second THP, not selected: {sorted(set(got[per:]))}"
        check_device_reads(evicting, buffer, range(per), seed, "the first THP")

        # Pages of both: the first is back already, the second moves whole.
        assert evict(evicting, buffer, [0, per + 7, npages - 1]) == Transfer(per, 0)
        assert set(snapshot(evicting, buffer)) <= {Prot.WRITE, Prot.WRITE | Prot.PMD}
        check_device_reads(evicting, buffer, range(per, npages), seed, "the second THP")
        check_memory(buffer, tagged(seed, 0, npages), "memory")


def test_evict_pte_mapped_thp(evicting: hmm.MirrorDevice, variant: Variant,
                              thp_size: int) -> None:
    """A huge device folio mapped by PTEs once mprotect split its PMD."""
    seed, per = 7, thp_size // PAGE_SIZE
    with migrated_thps(evicting, variant, thp_size, 1, seed) as buffer:
        buffer.mprotect(hmm.PROT_READ, 0, thp_size // 2)
        check_places(evicting, buffer,
                     lambda p: on_device(variant, writable=p >= per // 2),
                     "after mprotect split the PMD")
        done = evict(evicting, buffer, [per - 1])
        # Whole if the folio is still huge, one page if the split split it too.
        assert done in (Transfer(per, 0), Transfer(1, 0))
        moved = set(range(per)) if done.cpages == per else {per - 1}
        check_places(evicting, buffer,
                     lambda p: (Prot.READ if p < per // 2 else Prot.WRITE) if p in moved
                     else on_device(variant, writable=p >= per // 2),
                     f"after evicting the last page ({done.cpages} moved)")
        check_device_reads(evicting, buffer, moved, seed, "evicted pages")
        check_memory(buffer, tagged(seed, 0, per), "memory")


# ---------------------------------------------------------------------------------------
# Races


class Workers:
    """Threads that loop until stopped, collecting what went wrong."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self, name: str, body: Callable[[], None]) -> None:
        def run() -> None:
            try:
                while not self.stop.is_set():
                    body()
            except BaseException as error:  # reported by join_all
                self.problems.append(f"{name}: {type(error).__name__}: {error}")
                self.stop.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join_all(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(JOIN_SECONDS)
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, f"threads still running {JOIN_SECONDS}s after being stopped: {stuck}"
        assert not self.problems, "\n".join(self.problems)


def run_for(seconds: float, step: Callable[[], None], workers: Workers) -> int:
    """Run `step` until the time is up or a worker failed; how many times it ran."""
    deadline = time.monotonic() + seconds
    steps = 0
    try:
        while time.monotonic() < deadline and not workers.stop.is_set():
            step()
            steps += 1
    finally:
        workers.join_all()
    return steps


def test_evict_while_the_cpu_faults(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    """Readers check the even pages, a writer stamps the odd ones, from the CPU, while the
    pages go to the device and are evicted again."""
    npages, seed = 128, 8
    stamps: dict[int, int] = {}
    stamp_at = PAGE_SIZE - hmm.INT_SIZE
    with migrated(evicting, variant, npages, seed) as buffer:
        workers = Workers()
        for reader in range(2):
            rng = random.Random(reader)

            def read(rng: random.Random = rng) -> None:
                page = rng.randrange(0, npages, 2)
                problem = first_bad_page(buffer.contents(page * PAGE_SIZE, PAGE_SIZE),
                                         tag_page(seed, page))
                assert problem is None, f"page {page}: {problem}"

            workers.start(f"reader {reader}", read)
        stamper = random.Random(99)

        def stamp() -> None:
            page = stamper.randrange(1, npages, 2)
            value = stamps.get(page, 0) + 1
            buffer.write_int(page * PAGE_SIZE + stamp_at, value)
            stamps[page] = value

        workers.start("writer", stamp)
        rng = random.Random(seed)
        moved = 0

        def step() -> None:
            nonlocal moved
            # NoEntry: the CPU took a page back before the device read it. Fine.
            with contextlib.suppress(hmm.NoEntry, hmm.Busy):
                evicting.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
            # Busy: the range kept changing for a whole HMM_RANGE_DEFAULT_TIMEOUT.
            with contextlib.suppress(hmm.Busy):
                moved += evict(evicting, buffer, rng.sample(range(npages), npages // 2)).cpages

        steps = run_for(RACE_SECONDS, step, workers)
        # A race in which no eviction moved a page raced nothing.
        assert moved > 0, f"{steps} rounds evicted no page while the CPU faulted"

        evicting.evict_pfns(buffer.addr, npages)
        check_places(evicting, buffer, lambda _: Prot.WRITE, f"after {steps} rounds")
        expected = bytearray(tagged(seed, 0, npages))
        for page, value in stamps.items():
            struct.pack_into("<i", expected, page * PAGE_SIZE + stamp_at, value)
        check_memory(buffer, bytes(expected), f"every byte after {steps} rounds, "
                                              f"{moved} pages evicted, {len(stamps)} stamped")


def test_evict_while_migrating(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    """Another thread migrates random ranges to and from the device, and another file of the
    same device evicts too, while this one evicts random selections."""
    npages, seed = 128, 9
    with migrated(evicting, variant, npages, seed) as buffer, \
            HmmBuffer.anonymous(npages * PAGE_SIZE) as scratch, \
            hmm.MirrorDevice(variant.device_paths[0]) as other:
        workers = Workers()
        mover_rng = random.Random(1)

        def move() -> None:
            first = mover_rng.randrange(npages)
            count = mover_rng.randint(1, npages - first)
            try:
                if mover_rng.random() < 0.5:
                    evicting.migrate_to_device(buffer.page(first), count, scratch.mirror_ptr)
                else:
                    evicting.migrate_to_system(buffer.page(first), count)
            except (hmm.NoEntry, hmm.Busy):
                pass  # an eviction cleared a mirror entry before the device read it back

        workers.start("migrator", move)
        other_rng = random.Random(2)

        def evict_other() -> None:
            with contextlib.suppress(hmm.Busy):
                evict(other, buffer, other_rng.sample(range(npages), 16))

        workers.start("other evictor", evict_other)
        rng = random.Random(seed)
        moved = 0

        def step() -> None:
            nonlocal moved
            with contextlib.suppress(hmm.Busy):
                moved += evict(evicting, buffer,
                               rng.sample(range(npages), rng.randint(1, npages))).cpages

        steps = run_for(RACE_SECONDS, step, workers)
        assert moved > 0, f"{steps} rounds evicted no page while another thread migrated"

        evicting.evict_pfns(buffer.addr, npages)
        check_places(evicting, buffer, lambda _: Prot.WRITE, f"after {steps} rounds")
        check_memory(buffer, tagged(seed, 0, npages), f"every byte after {steps} rounds")


def race_frees(device: hmm.MirrorDevice, buffer: HmmBuffer, seed: int,
               span: Callable[[random.Random], tuple[int, int]],
               stock: bool = False) -> None:
    """Evict random selections while one thread frees ranges `span` picks (MADV_DONTNEED)
    and another migrates ranges to the device again, reusing the freed device pages: the
    ioctl's snapshot goes stale before migrate_device_pfns() takes the pages. Afterwards a
    freed page is empty and every other page holds its data. With `stock`, the main loop
    migrates `span`s back with MIGRATE_TO_SYS instead: the same race without the ioctl."""
    npages = buffer.npages
    dropped: set[int] = set()
    workers = Workers()
    with HmmBuffer.anonymous(buffer.size) as scratch:
        drop_rng, move_rng, rng = random.Random(1), random.Random(2), random.Random(seed)

        def drop() -> None:
            first, count = span(drop_rng)
            buffer.madvise(hmm.MADV_DONTNEED, first * PAGE_SIZE, count * PAGE_SIZE)
            dropped.update(range(first, first + count))

        def move() -> None:
            first, count = span(move_rng)
            with contextlib.suppress(hmm.NoEntry, hmm.Busy):
                device.migrate_to_device(buffer.page(first), count, scratch.mirror_ptr)

        moved = 0

        def back() -> None:
            nonlocal moved
            if stock:
                first, count = span(rng)
                moved += device.migrate_to_system(buffer.page(first), count).cpages
            else:
                with contextlib.suppress(hmm.Busy):
                    moved += evict(device, buffer,
                                   rng.sample(range(npages), rng.randint(1, npages))).cpages

        workers.start("dropper", drop)
        workers.start("migrator", move)
        steps = run_for(RACE_SECONDS, back, workers)
    # The race is between frees and pages coming back: both must have happened.
    assert dropped and moved > 0, \
        f"{steps} rounds: {len(dropped)} pages freed, {moved} brought back"

    if stock:
        device.migrate_to_system(buffer.addr, npages)
    else:
        device.evict_pfns(buffer.addr, npages)
    in_system = {Prot.WRITE, Prot.WRITE | Prot.PMD}
    places = snapshot(device, buffer)
    wrong = [(p, prot) for p, prot in enumerate(places)
             if prot not in (in_system | {Prot.NONE} if p in dropped else in_system)]
    assert not wrong, f"after {steps} rounds, pages not back in system memory: {wrong[:4]}"
    expected = b"".join(bytes(PAGE_SIZE) if p in dropped else tag_page(seed, p)
                        for p in range(npages))
    check_memory(buffer, expected, f"every byte after {steps} rounds, "
                                   f"{len(dropped)} pages freed on the way")


def test_evict_while_pages_are_freed(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    npages, seed = 128, 13

    def span(rng: random.Random) -> tuple[int, int]:
        first = rng.randrange(npages)
        return first, rng.randint(1, min(8, npages - first))

    with migrated(evicting, variant, npages, seed) as buffer:
        race_frees(evicting, buffer, seed, span)


def huge_spans(kind: str, count: int, per: int) -> Callable[[random.Random], tuple[int, int]]:
    """Whole huge pages, or parts of them (which leaves huge folios mapped by PTEs)."""
    def span(rng: random.Random) -> tuple[int, int]:
        first = rng.randrange(count) * per
        if kind == "whole":
            return first, per
        offset = rng.randrange(per)
        return first + offset, rng.randint(1, per - offset)
    return span


# Both kinds of frees are known to break 7.2 (known-issues.toml: thp-free-race-soft-lockup,
# partial-thp-free-bad-page-state).
@pytest.mark.parametrize("frees", ["whole", "partial"])
def test_evict_while_huge_pages_are_freed(evicting: hmm.MirrorDevice, variant: Variant,
                                          thp_size: int, frees: str) -> None:
    """As above with huge device folios, freed whole or in part, and allocated again by
    the migrations."""
    seed, count = 14, 4
    with migrated_thps(evicting, variant, thp_size, count, seed) as buffer:
        race_frees(evicting, buffer, seed, huge_spans(frees, count, thp_size // PAGE_SIZE))


@pytest.mark.parametrize("frees", ["whole", "partial"])
def test_migrate_back_while_huge_pages_are_freed(dmirror: hmm.MirrorDevice, variant: Variant,
                                                 thp_size: int, frees: str) -> None:
    """The control for the case above: the same race, migrating back with MIGRATE_TO_SYS
    (migrate_vma_*()) instead of evicting; it needs no extension."""
    seed, count = 15, 4
    with migrated_thps(dmirror, variant, thp_size, count, seed) as buffer:
        race_frees(dmirror, buffer, seed, huge_spans(frees, count, thp_size // PAGE_SIZE),
                   stock=True)


# ---------------------------------------------------------------------------------------
# Bad requests


def test_evict_bad_selections(evicting: hmm.MirrorDevice, variant: Variant) -> None:
    npages, seed = 16, 10
    with migrated(evicting, variant, npages, seed) as buffer, \
            HmmBuffer.anonymous(4 * PAGE_SIZE, hmm.PROT_NONE) as no_access:
        raw = evicting.command
        bad: dict[str, tuple[type[hmm.HmmError], Callable[[], object]]] = {
            "no pages": (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr, 0)),
            "an unaligned address":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr + 8, 1)),
            "a range that wraps around":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr, 1 << 52)),
            "more pages than one request takes":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr, (1 << 20) + 1)),
            "kernel addresses":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(0xFFFF888000000000, 1)),
            "the last page of the address space":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(2**64 - 2 * PAGE_SIZE, 1)),
            "an empty bitmap":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr, npages,
                                                                  bytes(npages // 8))),
            "bits only past npages":
                (hmm.InvalidArgument, lambda: evicting.evict_pfns(buffer.addr, 4, b"\xf0")),
            "an unreadable bitmap":
                (hmm.BadAddress, lambda: raw(IOCTL, buffer.addr, npages, 8)),
            "page 1, below mmap_min_addr":
                (hmm.BadAddress, lambda: evicting.evict_pfns(PAGE_SIZE, 4)),
        }
        for what, (error, request) in bad.items():
            with pytest.raises(error):
                request()
            check_places(evicting, buffer, lambda _: on_device(variant),
                         f"after a request with {what}")

        # Mapped but not accessible: a valid request that finds nothing to move.
        assert evicting.evict_pfns(no_access.addr, 4) == Transfer(0, 0)
        # Nothing was lost on the way: all of it still moves, with its data.
        assert evicting.evict_pfns(buffer.addr, npages) == Transfer(npages, 0)
        check_device_reads(evicting, buffer, range(npages), seed, "evicted after the errors")
        check_memory(buffer, tagged(seed, 0, npages), "memory")


# ---------------------------------------------------------------------------------------
# The stock eviction paths (migrate_device_range()), with pages shared with a child


class WaitingChild:
    """A forked child that closes the device files it inherited, says so, waits for the
    parent's go, then runs `check`."""

    def __init__(self, inherited: list[hmm.MirrorDevice], check: Callable[[], None]) -> None:
        ready_read, ready_write = os.pipe()
        self._go_read, self._go_write = os.pipe()

        def child() -> None:
            for device in inherited:
                os.close(device.fd)  # the parent's close must be the last one
            os.write(ready_write, b"r")
            os.read(self._go_read, 1)
            check()

        self.process = hmm.ChildProcess(child)
        os.close(ready_write)
        ready = os.read(ready_read, 1)
        os.close(ready_read)
        assert ready == b"r", "the child died before closing its device files"

    def go_and_join(self) -> None:
        os.write(self._go_write, b"g")
        try:
            self.process.join()
        finally:
            self._close()

    def kill(self) -> None:
        """After a failure in the parent: the child never gets its go."""
        if self._go_write >= 0:
            os.kill(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(hmm.ChildFailed):
                self.process.join()
            self._close()

    def _close(self) -> None:
        os.close(self._go_read)
        os.close(self._go_write)
        self._go_read = self._go_write = -1


def shared_migrated_buffer(device: hmm.MirrorDevice, npages: int, seed: int,
                           early: set[int]) -> HmmBuffer:
    """Tagged pages on `device`, but for `early`, evicted through migrate_device_pfns()."""
    buffer = HmmBuffer.anonymous(npages * PAGE_SIZE)
    try:
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        buffer.fill(tagged(seed, 0, npages))
        assert device.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        if early:
            assert evict(device, buffer, early) == Transfer(len(early), 0)
    except BaseException:
        buffer.close()
        raise
    return buffer


def evicted_early(device: hmm.MirrorDevice, npages: int) -> set[int]:
    """A quarter of the pages when the build has the ioctl, so that the stock paths meet
    a mix; asked before migrating, as the probe's scratch file evicts on release too."""
    return set(range(0, npages, 4)) if evict_unsupported(device) is None else set()


def child_check(variant: Variant, buffer: HmmBuffer, seed: int, when: str) -> Callable[[], None]:
    def check() -> None:
        check_memory(buffer, tagged(seed, 0, buffer.npages), f"the child's memory {when}")
        with hmm.MirrorDevice(variant.device_paths[0]) as mine:
            check_places(mine, buffer, lambda _: Prot.READ, f"in the child, {when}")
    return check


def test_release_evicts_resident_pages(dmirror: hmm.MirrorDevice, variant: Variant) -> None:
    """Closing a device file evicts every page of the device (dmirror_fops_release ->
    dmirror_device_evict_chunk -> migrate_device_range()); parent and child keep their data."""
    npages, seed = 64, 11
    early = evicted_early(dmirror, npages)
    other = hmm.MirrorDevice(variant.device_paths[0])
    try:
        buffer = shared_migrated_buffer(other, npages, seed, early)
    except BaseException:
        other.close()
        raise
    with buffer:
        try:
            child = WaitingChild([other, dmirror],
                                 child_check(variant, buffer, seed, "after the release"))
        except BaseException:
            other.close()
            raise
        try:
            check_places(dmirror, buffer,
                         lambda p: Prot.READ if p in early
                         else on_device(variant, writable=False), "before the release")
            other.close()
            check_places(dmirror, buffer, lambda _: Prot.READ, "after the release")
        except BaseException:
            other.close()
            child.kill()
            raise
        child.go_and_join()
        check_device_reads(dmirror, buffer, range(npages), seed, "after the release")
        check_memory(buffer, tagged(seed, 0, npages), "the parent's memory")


def module_loaded() -> bool:
    return os.path.exists("/sys/module/test_hmm")


def test_unload_with_resident_pages(variant: Variant, request: pytest.FixtureRequest) -> None:
    """Pages on the device until the last file closes, then `rmmod test_hmm` (whose exit path
    evicts again, chunk by chunk, with migrate_device_range()) and a reload with the
    session's parameters. test_hmm evicts on every release and rmmod needs every file
    closed, so the release's eviction is the one that brings the pages back; the unload must
    then find nothing to lose. Later cases find the module loaded again."""
    from harness.guest.plugin import load_module

    config = request.config
    module = config.getoption("hmm_module")
    if config.getoption("hmm_no_load") and module is None:
        pytest.skip("test_hmm was loaded outside the plugin (--hmm-no-load) and --hmm-module "
                    "does not say which module to load again")
    npages, seed = 64, 12
    device = hmm.MirrorDevice(variant.device_paths[0])
    try:
        early = evicted_early(device, npages)
        buffer = shared_migrated_buffer(device, npages, seed, early)
    except BaseException:
        device.close()
        raise
    with buffer:
        try:
            child = WaitingChild([device], child_check(variant, buffer, seed,
                                                       "after the module came back"))
        except BaseException:
            device.close()
            raise
        try:
            try:
                device.close()
                unload = subprocess.run(["rmmod", "test_hmm"], capture_output=True, text=True,
                                        timeout=120)
                assert unload.returncode == 0, \
                    f"rmmod test_hmm failed: {unload.stderr.strip()}"
                check_memory(buffer, tagged(seed, 0, npages), "memory with test_hmm unloaded")
            finally:
                if not module_loaded():
                    load_module(config.getoption("hmm_module_param"),
                                config.getoption("hmm_mode"), module)
            with hmm.MirrorDevice(variant.device_paths[0]) as again:
                check_places(again, buffer, lambda _: Prot.READ, "after the reload")
        except BaseException:
            child.kill()
            raise
        child.go_and_join()
        with hmm.MirrorDevice(variant.device_paths[0]) as again:
            check_memory(buffer, tagged(seed, 0, npages), "the parent's memory")
            # The reloaded module works: a fresh buffer goes to the device and back.
            with migrated(again, variant, 16, seed + 1) as fresh:
                if evict_unsupported(again) is None:
                    assert again.evict_pfns(fresh.addr, 16) == Transfer(16, 0)
                else:
                    assert again.migrate_to_system(fresh.addr, 16).cpages == 16
                check_memory(fresh, tagged(seed + 1, 0, 16), "a buffer after the reload")
