"""Soak: more memory cycled through each device than the device holds, and nothing lost.

Not part of the default suites (about a minute a variant under TCG); run it with
`python -m harness run --suite tests/guest/soak/soak_device_memory.py --mode all`.

Each round writes a working set with the CPU, migrates it to one device, checks what the
device returned, and brings it back (CPU fault, migrate_to_system or, with the project's
ioctl, migrate_device_pfns()), alternating devices and ways back. The rounds move 1.25 times
a device chunk (256 MiB) through each device, which a device holding on to freed pages
could not take without a new chunk. After the rounds:
- no migration failed (no ENOMEM, every page moved);
- no device added a chunk: the working set fits in the chunk each has from module load;
- MemFree is back within SOAK_TOLERANCE_KIB of where it was before the rounds.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm

if TYPE_CHECKING:
    from harness.guest.protocol import Variant

CHUNK = 256 << 20  # DEVMEM_CHUNK_SIZE of test_hmm.c
WORKING_SET = 32 << 20
ROUNDS = -(-5 * CHUNK // 4 // WORKING_SET) * 2  # both devices get 1.25 chunks' worth
# MemFree, even settled, swings by up to 56 MiB between two readings in the coherent
# guest (6 GiB) and by 9 MiB in the private one (measured around soaks of 2 to 40 rounds, the
# test process's own RssAnon unchanged). A leak of one working set per round would lose
# ROUNDS * 32 MiB = 640 MiB; 96 MiB catches any leak of a sixth of the pages moved or more.
SOAK_TOLERANCE_KIB = 3 * WORKING_SET >> 10
NEW_CHUNK = "added new"


def settled_mem_free() -> int:
    """MemFree in KiB once the page cache is dropped and the per-CPU free lists drained (by
    compaction), so that what it says is memory in use, not memory parked."""
    for path, value in (("/proc/sys/vm/drop_caches", "3"), ("/proc/sys/vm/compact_memory", "1")):
        if os.path.exists(path):
            with open(path, "w") as setting:
                setting.write(value)
    return hmm.meminfo()["MemFree"]


class KernelLogCursor:
    """The kernel log from now on, read without blocking."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def lines(self) -> list[str]:
        found: list[str] = []
        while True:
            try:
                record = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return found
            except OSError as error:
                if error.errno == errno.EPIPE:  # overwritten records: go on after them
                    continue
                raise
            found.append(record.partition(";")[2].strip())

    def close(self) -> None:
        os.close(self.fd)


def cycle(devices: tuple[hmm.MirrorDevice, hmm.MirrorDevice], ways_back: list[str],
          rounds: int) -> None:
    """`rounds` round trips of a fresh working set, alternating devices and ways back."""
    npages = WORKING_SET // hmm.PAGE_SIZE
    with hmm.HmmBuffer.anonymous(WORKING_SET) as buffer:
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        for number in range(rounds):
            device = devices[number % 2]
            buffer.fill(hmm.int_sequence(WORKING_SET // hmm.INT_SIZE, number))
            moved = device.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
            assert moved.cpages == npages, f"round {number}: {moved.cpages} pages moved"
            hmm.check_ints(bytes(buffer.mirror), hmm.int_sequence(
                WORKING_SET // hmm.INT_SIZE, number), f"round {number}: the device's copy")
            way = ways_back[number // 2 % len(ways_back)]
            if way == "migrate":
                back = device.migrate_to_system(buffer.addr, npages)
                assert back.cpages == npages, f"round {number}: {back.cpages} came back"
            elif way == "evict":
                back = device.evict_pfns(buffer.addr, npages)
                assert back.cpages == npages, f"round {number}: {back.cpages} evicted"
            hmm.check_ints(buffer.contents(), hmm.int_sequence(
                WORKING_SET // hmm.INT_SIZE, number), f"round {number} ({way}): the CPU's view")


@pytest.mark.timeout(1200)
def test_soak_cycles_more_than_a_device_holds_and_loses_nothing(
        variant: Variant, dmirror2: tuple[hmm.MirrorDevice, hmm.MirrorDevice]) -> None:
    evict = "HMM_DMIRROR_EVICT_PFNS" in dmirror2[0].supported_ioctls().answered
    # A CPU access to a coherent page does not move it: only private pages come back so.
    ways_back = ([] if variant.is_coherent else ["cpu"]) + ["migrate"] + \
        (["evict"] if evict else [])
    # One round first, so that what this process keeps (the int sequences it caches, the
    # allocator's arenas) is there before MemFree is read.
    cycle(dmirror2, ways_back, rounds=2)
    log = KernelLogCursor()
    try:
        free_before = settled_mem_free()
        cycle(dmirror2, ways_back, ROUNDS)
        new_chunks = [line for line in log.lines() if NEW_CHUNK in line]
    finally:
        log.close()
    assert not new_chunks, f"devices grew while the working set fit one chunk: {new_chunks}"
    lost = free_before - settled_mem_free()
    print(f"soak: {ROUNDS} rounds of {WORKING_SET >> 20} MiB ({variant.name}), back by "
          f"{', '.join(ways_back)}; MemFree {lost:+} KiB lower than before")
    assert lost < SOAK_TOLERANCE_KIB, \
        f"MemFree is {lost} KiB lower than before the soak (tolerance {SOAK_TOLERANCE_KIB} KiB)"
