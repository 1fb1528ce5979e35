"""The THP migration benchmark of the kernel's selftest, from Python, and its C twin run in the
same boot: the default suite's benchmark case and `bench --reference`'s pairs share it."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from harness import bench
from harness.guest import hmm, protocol
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, int_sequence

# The buffer sizes of hmm-tests' benchmark_thp_migration, as multiples of the PMD size.
SIZE_FACTORS = {"Small Buffer": 0.25, "Half THP Size": 0.5, "Single THP Size": 1,
                "Two THP Size": 2, "Four THP Size": 4, "Eight THP Size": 8,
                "One twenty eight THP Size": 128}
ITERATIONS = 5  # as the selftest's


def settle(when: str) -> None:
    unsettled = hmm.wait_for_memory_daemons_to_settle()
    if unsettled:
        print(f"memory daemons {when}: {unsettled}")


def migrate_both_ways(dmirror: hmm.MirrorDevice, size: int, use_thp: bool,
                      iterations: int) -> tuple[float, float]:
    """Mean seconds of one migration to the device and of one back."""
    npages = size // PAGE_SIZE
    with HmmBuffer.anonymous(size) as buffer:
        buffer.madvise(hmm.MADV_HUGEPAGE if use_thp else hmm.MADV_NOHUGEPAGE)
        buffer.fill_repeated(int_sequence(256))  # ptr[i] = i & 0xFF
        # The previous round's PMD-sized allocations woke compaction, which would hold
        # some of these small pages isolated while the migration looks for them.
        settle(f"before migrating {size} bytes")
        # One explanation for the warm-up and every iteration: reading the counters around
        # each migration would be work the C benchmark does not do between its timings.
        with hmm.pages_left_behind_explained(dmirror, buffer):
            dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
            dmirror.migrate_to_system(buffer.addr, npages, buffer.mirror_ptr)
            to_device = to_system = 0.0
            for _ in range(iterations):
                start = time.perf_counter()
                dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                middle = time.perf_counter()
                dmirror.migrate_to_system(buffer.addr, npages, buffer.mirror_ptr)
                to_device += middle - start
                to_system += time.perf_counter() - middle
    return to_device / iterations, to_system / iterations


def python_table(dmirror: hmm.MirrorDevice, thp_size: int) -> list[bench.Figure]:
    """The whole table, printed as it goes, in the selftest's order (THP first)."""
    figures = []
    print(f"\nHMM THP Migration Benchmark (page size {PAGE_SIZE})")
    for label, factor in SIZE_FACTORS.items():
        size = int(thp_size * factor)
        if size > 2**31 - 1:
            break
        thp = migrate_both_ways(dmirror, size, True, ITERATIONS)
        regular = migrate_both_ways(dmirror, size, False, ITERATIONS)
        print(f"{label} ({size / 2**20:.1f} MiB): "
              f"sys->dev {thp[0] * 1e3:.3f} ms with THP, {regular[0] * 1e3:.3f} ms without; "
              f"dev->sys {thp[1] * 1e3:.3f} ms with THP, {regular[1] * 1e3:.3f} ms without")
        for direction, column in (("s2d", 0), ("d2s", 1)):
            figures += [bench.Figure(label, size, True, direction, thp[column]),
                        bench.Figure(label, size, False, direction, regular[column])]
    return figures


def c_table(variant_name: str, timeout: float) -> list[bench.Figure]:
    """The same table from hmm-tests' own benchmark_thp_migration, on the variant's device."""
    case = f"hmm.hmm_device_{variant_name}.benchmark_thp_migration"
    done = subprocess.run([protocol.HMM_TESTS, "-r", case], capture_output=True, text=True,
                          timeout=timeout, cwd="/tmp")
    figures = bench.parse_c_benchmark(done.stdout)
    if done.returncode != 0 or not figures:
        raise AssertionError(f"hmm-tests -r {case} exited {done.returncode} with "
                             f"{len(figures)} figures:\n{(done.stdout + done.stderr)[-4000:]}")
    return figures


def as_measurement(figure: bench.Figure) -> dict[str, Any]:
    return {"label": figure.label, "size_bytes": figure.size_bytes, "thp": figure.thp,
            "direction": figure.direction, "seconds": figure.seconds}
