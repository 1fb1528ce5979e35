"""The kernel selftest's `hmm2` cases (tools/testing/selftests/mm/hmm-tests.c): two devices.

Each test keeps the name, the data checks, the fault counts and the errors of the kernel
case it stands for, including where those differ for device-coherent memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, Prot, Transfer, check_ints, int_sequence

if TYPE_CHECKING:
    from harness.guest.protocol import Variant

DevicePair = tuple[hmm.MirrorDevice, hmm.MirrorDevice]


def test_migrate_mixed(dmirror2: DevicePair) -> None:
    device0, device1 = dmirror2
    npages = 6
    with HmmBuffer.anonymous(npages * PAGE_SIZE, hmm.PROT_NONE) as buffer:
        with pytest.raises(hmm.InvalidArgument):
            device1.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)

        buffer.munmap(PAGE_SIZE, PAGE_SIZE)
        # No vma covers page 1 any more.
        with pytest.raises(hmm.InvalidArgument):
            device1.migrate_to_device(buffer.addr, 3, buffer.mirror_ptr)

        # Page 2 the read-only zero page, page 3 read-only data, pages 4-5 read-write data.
        buffer.mprotect(hmm.PROT_READ, 2 * PAGE_SIZE, PAGE_SIZE)
        value = buffer.read_int(2 * PAGE_SIZE) + 3
        assert value == 3
        buffer.mprotect(hmm.PROT_READ_WRITE, 3 * PAGE_SIZE, PAGE_SIZE)
        buffer.write_int(3 * PAGE_SIZE, value)
        buffer.mprotect(hmm.PROT_READ, 3 * PAGE_SIZE, PAGE_SIZE)
        buffer.mprotect(hmm.PROT_READ_WRITE, 4 * PAGE_SIZE, 2 * PAGE_SIZE)
        buffer.write_int(4 * PAGE_SIZE, value)
        buffer.write_int(5 * PAGE_SIZE, value)

        done = device1.migrate_to_device(buffer.page(2), 4, buffer.mirror_ptr)
        assert done.cpages == 4

        # Page 5 now belongs to device 1, so device 0 cannot migrate it.
        with pytest.raises(hmm.NoEntry):
            device0.migrate_to_device(buffer.page(5), 1, buffer.mirror_ptr)


def test_snapshot(dmirror2: DevicePair, variant: Variant) -> None:
    device0, device1 = dmirror2
    npages = 7
    with HmmBuffer.anonymous(npages * PAGE_SIZE, hmm.PROT_NONE) as buffer:
        # Page 1 unmapped, page 2 the read-only zero page, page 3 read-only data,
        # pages 4-6 read-write (data in 4), 5 and 6 then moved to devices 0 and 1.
        buffer.munmap(PAGE_SIZE, PAGE_SIZE)
        buffer.mprotect(hmm.PROT_READ, 2 * PAGE_SIZE, PAGE_SIZE)
        value = buffer.read_int(2 * PAGE_SIZE) + 3
        assert value == 3
        buffer.mprotect(hmm.PROT_READ_WRITE, 3 * PAGE_SIZE, PAGE_SIZE)
        buffer.write_int(3 * PAGE_SIZE, value)
        buffer.mprotect(hmm.PROT_READ, 3 * PAGE_SIZE, PAGE_SIZE)
        buffer.mprotect(hmm.PROT_READ_WRITE, 4 * PAGE_SIZE, 3 * PAGE_SIZE)
        buffer.write_int(4 * PAGE_SIZE, value)

        assert device0.migrate_to_device(buffer.page(5), 1, buffer.mirror_ptr).cpages == 1
        assert device1.migrate_to_device(buffer.page(6), 1, buffer.mirror_ptr).cpages == 1

        assert device0.snapshot(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        if variant.is_coherent:
            on_devices = [Prot.DEV_COHERENT_LOCAL | Prot.WRITE,
                          Prot.DEV_COHERENT_REMOTE | Prot.WRITE]
        else:
            # Device 0 cannot see a private page of device 1 at all.
            on_devices = [Prot.DEV_PRIVATE_LOCAL | Prot.WRITE, Prot.NONE]
        assert buffer.mirror_prots(npages) == [
            Prot.ERROR,               # PROT_NONE
            Prot.ERROR,               # unmapped
            Prot.ZERO | Prot.READ,
            Prot.READ,
            Prot.WRITE,
            *on_devices,
        ]


def test_double_map(dmirror2: DevicePair) -> None:
    device0, device1 = dmirror2
    npages = 6
    size = npages * PAGE_SIZE
    expected = int_sequence(size // hmm.INT_SIZE)
    with HmmBuffer.anonymous(size) as buffer:
        buffer.fill(expected)
        buffer.mprotect(hmm.PROT_READ)

        assert device0.read(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.mirror, expected, "what device 0 read")

        assert device1.read(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.mirror, expected, "what device 1 read")

        # Device 0 reads the pages while they sit in device 1's memory.
        assert device1.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        assert device0.read(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.mirror, expected, "what device 0 read from device 1's memory")
