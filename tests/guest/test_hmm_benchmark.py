"""The kernel selftest's benchmark_thp_migration, alone so that it runs last.

In coherent mode it has crashed the 7.2 kernel (NULL pointer dereference in
dmirror_migrate_to_device); every other case has reported by then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.guest import hmm
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, int_sequence


def settle(when: str) -> None:
    unsettled = hmm.wait_for_memory_daemons_to_settle()
    if unsettled:
        print(f"memory daemons {when}: {unsettled}")


def migration_benchmark(dmirror: hmm.MirrorDevice, size: int, use_thp: bool,
                        iterations: int) -> tuple[float, float]:
    """Mean seconds of one migration to the device and of one back."""
    npages = size // PAGE_SIZE
    with HmmBuffer.anonymous(size) as buffer:
        buffer.madvise(hmm.MADV_HUGEPAGE if use_thp else hmm.MADV_NOHUGEPAGE)
        buffer.fill_repeated(int_sequence(256))  # ptr[i] = i & 0xFF
        # The previous round's PMD-sized allocations woke compaction, which would hold
        # some of these small pages isolated while the migration looks for them.
        settle(f"before migrating {size} bytes")
        with hmm.pages_left_behind_explained(dmirror, buffer):
            dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
        dmirror.migrate_to_system(buffer.addr, npages, buffer.mirror_ptr)
        to_device = to_system = 0.0
        for _ in range(iterations):
            with hmm.pages_left_behind_explained(dmirror, buffer):
                start = time.perf_counter()
                dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                middle = time.perf_counter()
            dmirror.migrate_to_system(buffer.addr, npages, buffer.mirror_ptr)
            to_device += middle - start
            to_system += time.perf_counter() - middle
    return to_device / iterations, to_system / iterations


# About 95 s under TCG; the kernel selftest gives it 120 s on real hardware.
@pytest.mark.timeout(900)
def test_benchmark_thp_migration(
        dmirror: hmm.MirrorDevice, thp_size: int,
        record_testsuite_property: Callable[[str, object], None],
        record_measurement: Callable[..., None]) -> None:
    iterations = 5
    factors = {"Small Buffer": 0.25, "Half THP Size": 0.5, "Single THP Size": 1,
               "Two THP Size": 2, "Four THP Size": 4, "Eight THP Size": 8,
               "One twenty eight THP Size": 128}
    print(f"\nHMM THP Migration Benchmark (page size {PAGE_SIZE})")
    for name, factor in factors.items():
        size = int(thp_size * factor)
        if size > 2**31 - 1:
            break
        gib = size / 2**30
        thp = migration_benchmark(dmirror, size, True, iterations)
        regular = migration_benchmark(dmirror, size, False, iterations)
        print(f"{name} ({size / 2**20:.1f} MiB): "
              f"sys->dev {thp[0] * 1e3:.3f} ms with THP, {regular[0] * 1e3:.3f} ms without; "
              f"dev->sys {thp[1] * 1e3:.3f} ms with THP, {regular[1] * 1e3:.3f} ms without")
        for direction, column in (("s2d", 0), ("d2s", 1)):
            for thp_used, seconds in ((True, thp[column]), (False, regular[column])):
                record_measurement(kind="thp_migration", label=name, size_bytes=size,
                                   thp=thp_used, direction=direction, seconds=seconds)
            record_testsuite_property(f"{name} {direction} GB/s thp/regular",
                                      f"{gib / thp[column]:.3f}/{gib / regular[column]:.3f}")
