"""Soak: more memory cycled through each device than the device holds, and nothing lost.

Each round writes a working set with the CPU, migrates it to one device, checks what the
device returned, and brings it back (CPU fault, migrate_to_system or, with the project's
ioctl, migrate_device_pfns()), alternating devices and ways back. The rounds move 1.25 times
a device chunk (256 MiB) through each device, which a device holding on to freed pages
could not take without a new chunk. After the rounds:
- no migration failed (no ENOMEM, every page moved);
- no device added a chunk: the working set fits in the chunk each has from module load;
- MemFree is back within SOAK_TOLERANCE of where it was before the working set was mapped.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm

if TYPE_CHECKING:
    from harness.guest.plugin import Variant

CHUNK = 256 << 20  # DEVMEM_CHUNK_SIZE of test_hmm.c
WORKING_SET = 32 << 20
ROUNDS = -(-5 * CHUNK // 4 // WORKING_SET) * 2  # both devices get 1.25 chunks' worth
# Slab, page tables and the allocator's per-CPU lists move MemFree by a few MiB on their own.
SOAK_TOLERANCE_KIB = 16 << 10
NEW_CHUNK = "added new"


class KernelLogCursor:
    """The kernel log from now on, read without blocking."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def lines(self) -> list[str]:
        found = []
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


@pytest.mark.timeout(1200)
def test_soak_cycles_more_than_a_device_holds_and_loses_nothing(
        variant: Variant, dmirror2: tuple[hmm.MirrorDevice, hmm.MirrorDevice]) -> None:
    npages = WORKING_SET // hmm.PAGE_SIZE
    evict = "HMM_DMIRROR_EVICT_PFNS" in dmirror2[0].supported_ioctls().answered
    ways_back = ["cpu", "migrate"] + (["evict"] if evict else [])
    log = KernelLogCursor()
    free_before = hmm.meminfo()["MemFree"]
    try:
        with hmm.HmmBuffer.anonymous(WORKING_SET) as buffer:
            buffer.madvise(hmm.MADV_NOHUGEPAGE)
            for number in range(ROUNDS):
                device = dmirror2[number % 2]
                contents = hmm.int_sequence(WORKING_SET // hmm.INT_SIZE, number)
                buffer.fill(contents)
                moved = device.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                assert moved.cpages == npages, f"round {number}: {moved.cpages} pages moved"
                hmm.check_ints(bytes(buffer.mirror), contents,
                               f"round {number}: the device's copy")
                way = ways_back[number // 2 % len(ways_back)]
                if way == "migrate":
                    back = device.migrate_to_system(buffer.addr, npages)
                    assert back.cpages == npages, f"round {number}: {back.cpages} came back"
                elif way == "evict":
                    back = device.evict_pfns(buffer.addr, npages)
                    assert back.cpages == npages, f"round {number}: {back.cpages} evicted"
                hmm.check_ints(buffer.contents(), contents,
                               f"round {number} ({way}): the CPU's view")
        new_chunks = [line for line in log.lines() if NEW_CHUNK in line]
    finally:
        log.close()
    assert not new_chunks, f"devices grew while the working set fit one chunk: {new_chunks}"
    lost = free_before - hmm.meminfo()["MemFree"]
    print(f"soak: {ROUNDS} rounds of {WORKING_SET >> 20} MiB ({variant.name}), back by "
          f"{', '.join(ways_back)}; MemFree {lost:+} KiB lower than before")
    assert lost < SOAK_TOLERANCE_KIB, \
        f"MemFree is {lost} KiB lower than before the soak (tolerance {SOAK_TOLERANCE_KIB} KiB)"
