"""The kernel selftest's `hmm` cases (tools/testing/selftests/mm/hmm-tests.c): one device.

Each test keeps the name, the data checks, the fault counts and the errors of the kernel
case it stands for, including where those differ for device-coherent memory.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, Prot, Transfer, check_ints, int_sequence

if TYPE_CHECKING:
    from harness.guest.protocol import Variant

HMM_BUFFER_SIZE = 1024 << 12
NTIMES = 10
TWO_MIB = 2 << 20
# The kernel cases open unit 0 in a forked child whatever the variant (hmm_open(0)).
CHILD_DEVICE = "/dev/hmm_dmirror0"
GUP_TEST = "/sys/kernel/debug/gup_test"


def default_size() -> tuple[int, int]:
    """(npages, size) of the kernel cases' usual buffer."""
    size = hmm.align_up(HMM_BUFFER_SIZE, PAGE_SIZE)
    return size // PAGE_SIZE, size


def ints_for(size: int, start: int = 0, step: int = 1) -> bytes:
    """The ints `start + i * step` filling `size` bytes."""
    return int_sequence(size // hmm.INT_SIZE, start, step)


def filled_anonymous(size: int) -> HmmBuffer:
    """Private anonymous memory holding ptr[i] = i."""
    buffer = HmmBuffer.anonymous(size)
    buffer.fill(ints_for(size))
    return buffer


def test_open_close(dmirror: hmm.MirrorDevice) -> None:
    pass


def test_anon_read(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.anonymous(size) as buffer:
        # Pages 0 and 1 stay zero: one never touched, one mapped to the zero page below.
        untouched = 2 * PAGE_SIZE
        buffer.fill(ints_for(size)[untouched:], offset=untouched)
        buffer.mprotect(hmm.PROT_READ)
        assert buffer.read_int(PAGE_SIZE) == 0

        assert dmirror.read(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.mirror, bytes(untouched) + ints_for(size)[untouched:],
                   "what the device read")


def test_anon_read_prot(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        buffer.mirror[:] = ints_for(size, 0, -1)
        buffer.mprotect(hmm.PROT_NONE)

        with pytest.raises(hmm.BadAddress):
            dmirror.read(buffer.addr, npages, buffer.mirror_ptr)

        buffer.mprotect(hmm.PROT_READ)
        check_ints(buffer.contents(), ints_for(size), "memory")
        check_ints(buffer.mirror, ints_for(size, 0, -1), "the mirror, which nothing may write")


def test_anon_write(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.anonymous(size) as buffer:
        buffer.mirror[:] = ints_for(size)

        assert dmirror.write(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.contents(), ints_for(size), "what the device wrote")


def test_anon_write_prot(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.anonymous(size, hmm.PROT_READ) as buffer:
        assert dmirror.read(buffer.addr, 1, buffer.mirror_ptr) == Transfer(1, 1)

        buffer.mirror[:] = ints_for(size)
        with pytest.raises(hmm.PermissionDenied):
            dmirror.write(buffer.addr, npages, buffer.mirror_ptr)
        check_ints(buffer.contents(), bytes(size), "read-only memory after a refused write")

        # Once writable, the device's write replaces the zero page.
        buffer.mprotect(hmm.PROT_READ_WRITE)
        assert dmirror.write(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.contents(), ints_for(size), "what the device wrote")


def test_anon_write_child(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    for migrate in (False, True):
        for use_thp in (False, True):
            size = hmm.align_up(thp_size if use_thp else HMM_BUFFER_SIZE, PAGE_SIZE)
            npages = size // PAGE_SIZE
            if use_thp:
                buffer = HmmBuffer.huge_aligned(size)
            else:
                buffer = HmmBuffer.anonymous(size, reserve=2 * size)
                # Small pages, as the case means (the C case leaves them to THP "always"):
                # khugepaged could collapse them into a THP while the child's device write
                # faults them in, an invalidation that makes it fault twice (seen once in
                # 80 runs).
                buffer.madvise(hmm.MADV_NOHUGEPAGE)
            with buffer:
                buffer.fill(ints_for(size))
                buffer.mirror[:] = ints_for(size, 0, -1)
                if migrate:
                    done = dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                    assert done.cpages == npages

                def child(buffer: HmmBuffer = buffer, npages: int = npages,
                          size: int = size, migrate: bool = migrate) -> None:
                    check_ints(buffer.contents(), ints_for(size), "the parent's values")
                    if not migrate:
                        check_ints(buffer.mirror, ints_for(size, 0, -1), "the child's mirror")
                    # A device file mirrors the mm that opened it: the child needs its own.
                    with hmm.MirrorDevice(CHILD_DEVICE) as child_mirror:
                        done = child_mirror.write(buffer.addr, npages, buffer.mirror_ptr)
                        assert done == Transfer(npages, 1)
                    if not migrate:
                        check_ints(buffer.contents(), ints_for(size, 0, -1),
                                   "what the device wrote in the child")

                hmm.run_in_child(child)
                check_ints(buffer.contents(), ints_for(size),
                           f"the parent's memory (migrate={migrate}, thp={use_thp})")


def test_anon_write_child_shared(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.anonymous(size, shared=True) as buffer:
        buffer.fill(ints_for(size))
        buffer.mirror[:] = ints_for(size, 0, -1)

        def child() -> None:
            check_ints(buffer.contents(), ints_for(size), "the parent's values")
            check_ints(buffer.mirror, ints_for(size, 0, -1), "the child's mirror")
            with hmm.MirrorDevice(CHILD_DEVICE) as child_mirror:
                done = child_mirror.write(buffer.addr, npages, buffer.mirror_ptr)
                assert done == Transfer(npages, 1)
            check_ints(buffer.contents(), ints_for(size, 0, -1),
                       "what the device wrote in the child")

        hmm.run_in_child(child)
        check_ints(buffer.contents(), ints_for(size, 0, -1),
                   "the parent's shared memory, written in the child")


def test_anon_write_huge(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    with HmmBuffer.huge_aligned(size) as buffer:
        buffer.mirror[:] = ints_for(size)

        assert dmirror.write(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.contents(), ints_for(size), "what the device wrote")


def test_anon_write_hugetlbfs(dmirror: hmm.MirrorDevice, hugetlb_page_size: int) -> None:
    size = hmm.align_up(TWO_MIB, hugetlb_page_size)
    npages = size // PAGE_SIZE
    try:
        buffer = HmmBuffer.hugetlb(size)
    except OSError as error:
        pytest.skip(f"Huge page could not be allocated: {error.strerror}")
    with buffer:
        buffer.mirror[:] = ints_for(size)

        assert dmirror.write(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.contents(), ints_for(size), "what the device wrote")


def test_file_read(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.file_backed(size, hmm.PROT_READ, contents=ints_for(size)) as buffer:
        assert dmirror.read(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.mirror, ints_for(size), "what the device read")


def test_file_write(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.file_backed(size) as buffer:
        buffer.mirror[:] = ints_for(size)

        assert dmirror.write(buffer.addr, npages, buffer.mirror_ptr) == Transfer(npages, 1)
        check_ints(buffer.contents(), ints_for(size), "what the device wrote")
        check_ints(os.pread(buffer.fd, size, 0), ints_for(size), "the file")


def test_migrate(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")


def test_migrate_file_private(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.file_backed(size, shared=False) as buffer:
        buffer.fill(ints_for(size))

        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")


def test_migrate_fault(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        half = size // 2
        check_ints(buffer.contents(0, half), ints_for(half), "the half faulted back")

        # Half in system memory, half on the device: all of it goes to the device again.
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read the second time")


def test_migrate_release(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        dmirror.release(buffer.addr, npages)

        half = size // 2
        check_ints(buffer.contents(0, half), ints_for(half), "memory after the device released it")


def test_migrate_shared(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with HmmBuffer.anonymous(size, shared=True) as buffer, pytest.raises(hmm.NoEntry):
        dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)


def test_migrate_multiple(dmirror: hmm.MirrorDevice, variant: Variant) -> None:
    npages, size = default_size()
    for attempt in range(NTIMES):
        with filled_anonymous(size) as buffer:
            done = dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
            assert done.cpages == npages, f"attempt {attempt}"
            check_ints(buffer.mirror, ints_for(size), f"what the device read, attempt {attempt}")

            # The CPU reaches coherent device memory without a fault, so nothing would
            # bring those pages back: migrate them explicitly.
            if variant.is_coherent:
                done = dmirror.migrate_to_system(buffer.addr, npages)
                assert done.cpages == npages, f"attempt {attempt}"
            check_ints(buffer.contents(), ints_for(size), f"memory, attempt {attempt}")


def test_anon_read_multiple(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    for attempt in range(NTIMES):
        with HmmBuffer.anonymous(size) as buffer:
            buffer.fill(ints_for(size, attempt))

            done = dmirror.read(buffer.addr, npages, buffer.mirror_ptr)
            assert done == Transfer(npages, 1), f"attempt {attempt}"
            check_ints(buffer.mirror, ints_for(size, attempt),
                       f"what the device read, attempt {attempt}")


def test_anon_teardown(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    for attempt in range(NTIMES):
        with HmmBuffer.anonymous(size) as buffer:
            buffer.fill(ints_for(size, attempt))

            def unmap_second_half(buffer: HmmBuffer = buffer) -> None:
                time.sleep(random.randrange(32000) / 1e9)
                buffer.munmap(size // 2, size // 2)

            unmapper = threading.Thread(target=unmap_second_half)
            unmapper.start()
            try:
                done = dmirror.read(buffer.addr, npages, buffer.mirror_ptr)
            except hmm.HmmError:
                pass  # The unmap won the race: any error is fine, a crash or hang is not.
            else:
                assert done == Transfer(npages, 1), f"attempt {attempt}"
                check_ints(buffer.mirror, ints_for(size, attempt),
                           f"what the device read, attempt {attempt}")
            finally:
                unmapper.join()


def test_mixedmap(dmirror: hmm.MirrorDevice) -> None:
    # test_hmm's own mmap handler backs this with ordinary pages, inserted as a mixed map.
    with HmmBuffer.mapped(dmirror.fd, PAGE_SIZE, shared=False) as buffer:
        assert dmirror.snapshot(buffer.addr, 1, buffer.mirror_ptr).cpages == 1
        assert buffer.mirror_prots(1) == [Prot.READ]


def test_compound(dmirror: hmm.MirrorDevice, hugetlb_page_size: int) -> None:
    size = hmm.align_up(TWO_MIB, hugetlb_page_size)
    npages = size // PAGE_SIZE
    try:
        buffer = HmmBuffer.hugetlb(size)
    except OSError as error:
        pytest.skip(f"Huge page could not be allocated: {error.strerror}")
    with buffer:
        buffer.fill(ints_for(size))

        # One huge page, reported at PMD or PUD level after the default huge page size;
        # every page must report that same level.
        assert dmirror.snapshot(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        level = Prot.PUD if buffer.mirror[0] & Prot.PUD else Prot.PMD
        assert buffer.mirror_prots(npages) == [Prot.WRITE | level] * npages

        buffer.mprotect(hmm.PROT_READ)
        assert dmirror.snapshot(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        level = Prot.PUD if buffer.mirror[0] & Prot.PUD else Prot.PMD
        assert buffer.mirror_prots(npages) == [Prot.READ | level] * npages


def test_exclusive(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.exclusive(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        # CPU access takes the pages back from the device.
        check_ints(buffer.contents(), ints_for(size), "memory read back")
        buffer.fill(ints_for(size, 1))
        check_ints(buffer.contents(), ints_for(size, 1), "memory after incrementing")

        dmirror.check_exclusive(buffer.addr, npages)


def test_exclusive_mprotect(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.exclusive(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        buffer.mprotect(hmm.PROT_READ)
        with pytest.raises(hmm.PermissionDenied):
            dmirror.write(buffer.addr, npages, buffer.mirror_ptr)


def test_exclusive_cow(dmirror: hmm.MirrorDevice) -> None:
    npages, size = default_size()
    with filled_anonymous(size) as buffer:
        assert dmirror.exclusive(buffer.addr, npages, buffer.mirror_ptr).cpages == npages

        def increment(who: str) -> None:
            check_ints(buffer.contents(), ints_for(size), f"{who}: memory read back")
            buffer.fill(ints_for(size, 1))
            check_ints(buffer.contents(), ints_for(size, 1), f"{who}: memory after incrementing")

        # Both processes write at once, each must get its own copy.
        child = hmm.ChildProcess(lambda: increment("child"))
        increment("parent")
        child.join()


def test_hmm_gup_test(dmirror: hmm.MirrorDevice) -> None:
    if not os.path.exists(GUP_TEST):
        pytest.skip(f"no {GUP_TEST}: CONFIG_GUP_TEST is not set or debugfs is not mounted")
    pytest.skip(f"{GUP_TEST} exists, but _hmm_uapi does not bind mm/gup_test.h yet")


def test_hmm_cow_in_device(dmirror: hmm.MirrorDevice) -> None:
    npages = 4
    size = npages * PAGE_SIZE
    with filled_anonymous(size) as buffer:
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages

        pid = os.fork()
        if pid == 0:
            # Holds the copy-on-write references until killed, never returning into pytest.
            try:
                while True:
                    signal.pause()
            finally:
                os._exit(0)

        # Writing private device pages brings them back to system memory before the copy;
        # coherent device pages are copied straight from device memory.
        buffer.fill(ints_for(size))

        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGKILL

        assert dmirror.snapshot(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        assert buffer.mirror_prots(npages) == [Prot.WRITE] * npages


def test_migrate_anon_huge_empty(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    with HmmBuffer.huge_aligned(size, hmm.PROT_READ) as buffer:
        buffer.mirror[:] = b"\xff" * size

        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, bytes(size), "what the device read")


def test_migrate_anon_huge_zero(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    with HmmBuffer.huge_aligned(size, hmm.PROT_READ) as buffer:
        buffer.mirror[:] = b"\xff" * size
        # Map the huge zero page.
        assert buffer.read_int(0) == 0

        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, bytes(size), "what the device read")
        check_ints(buffer.contents(), bytes(size), "memory faulted back")


def test_migrate_anon_huge_free(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    with HmmBuffer.huge_aligned(size) as buffer:
        buffer.mirror[:] = b"\xff" * size
        buffer.fill(ints_for(size))

        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        buffer.madvise(hmm.MADV_FREE)


def test_migrate_anon_huge_fault(
        dmirror: hmm.MirrorDevice, variant: Variant, thp_size: int) -> None:
    if hmm.MADV_COLLAPSE is None:
        pytest.skip("MADV_COLLAPSE is unknown to the C library _hmm_uapi was built with")
    size, npages = thp_size, thp_size // PAGE_SIZE
    with HmmBuffer.huge_aligned(size, advice=None) as buffer:
        buffer.mirror[:] = b"\xff" * size
        buffer.fill(ints_for(size))
        buffer.madvise(hmm.MADV_COLLAPSE)

        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        if not variant.is_coherent:
            assert dmirror.snapshot(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
            huge_on_device = Prot.DEV_PRIVATE_LOCAL | Prot.WRITE | Prot.PMD
            assert buffer.mirror_prots(npages) == [huge_on_device] * npages

            for page, entry in enumerate(hmm.pagemap_entries(buffer.addr, npages)):
                assert entry & hmm.PAGEMAP_SWAP, f"page {page}: pagemap entry {entry:#x}"
                assert not entry & hmm.PAGEMAP_PRESENT, f"page {page}: pagemap entry {entry:#x}"

        check_ints(buffer.contents(), ints_for(size), "memory faulted back")


def test_migrate_partial_unmap_fault(dmirror: hmm.MirrorDevice) -> None:
    size = hmm.pmd_size() or TWO_MIB
    npages = size // PAGE_SIZE
    unmap_size = size // 2
    for use_thp in (False, True):
        for offset in (0, size // 4, size // 2):
            advice = hmm.MADV_HUGEPAGE if use_thp else hmm.MADV_NOHUGEPAGE
            with HmmBuffer.huge_aligned(size, advice=advice) as buffer:
                buffer.mirror[:] = b"\xff" * size
                buffer.fill(ints_for(size))
                where = f"thp={use_thp}, unmapped from {offset:#x}"

                done = dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                assert done.cpages == npages, where
                check_ints(buffer.mirror, ints_for(size), f"what the device read, {where}")

                buffer.munmap(offset, unmap_size)

                rest = offset + unmap_size
                check_ints(buffer.contents(0, offset), ints_for(size)[:offset],
                           f"memory before the hole, {where}")
                check_ints(buffer.contents(rest, size - rest), ints_for(size)[rest:],
                           f"memory after the hole, {where}")


def test_migrate_remap_fault(dmirror: hmm.MirrorDevice) -> None:
    if hmm.MREMAP_DONTUNMAP is None:
        pytest.skip("MREMAP_DONTUNMAP is unknown to the C library _hmm_uapi was built with")
    size = hmm.pmd_size() or TWO_MIB
    npages = size // PAGE_SIZE
    for before in (False, True):
        for dont_unmap in (False, True):
            for use_thp in (False, True):
                for offset in (0, size // 4, size // 2):
                    flags = hmm.MREMAP_DONTUNMAP if dont_unmap else 0
                    advice = hmm.MADV_HUGEPAGE if use_thp else hmm.MADV_NOHUGEPAGE
                    where = (f"remap {'before' if before else 'after'} migrating, "
                             f"dontunmap={dont_unmap}, thp={use_thp}, offset={offset:#x}")
                    with HmmBuffer.huge_aligned(size, advice=advice,
                                                reserve=8 * size) as buffer:
                        buffer.mirror[:] = b"\xff" * size
                        buffer.fill(ints_for(size))
                        # As the kernel case, the target lies in a hole: [size, 3 * size)
                        # is unmapped just before the move.
                        target = buffer.addr + size + offset
                        hole = (buffer.addr + size, 2 * size)

                        if before:
                            buffer.addr = buffer.mapping.mremap_into_hole(
                                buffer.addr, size, target, flags, hole)

                        done = dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr)
                        assert done.cpages == npages, where
                        check_ints(buffer.mirror, ints_for(size), f"what the device read, {where}")

                        if not before:
                            buffer.addr = buffer.mapping.mremap_into_hole(
                                buffer.addr, size, target, flags, hole)

                        check_ints(buffer.contents(), ints_for(size),
                                   f"memory faulted back, {where}")


def test_migrate_anon_huge_err(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    page_two_of_ints = 2048 * hmm.INT_SIZE  # the kernel case's ptr[2048]
    with HmmBuffer.huge_aligned(size) as buffer:
        buffer.mirror[:] = b"\xff" * size
        buffer.fill(ints_for(size))

        # The device cannot allocate a huge page, and has to migrate it as small ones.
        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, ints_for(size), "what the device read")

        assert buffer.read_int(page_two_of_ints) == 2048

    with HmmBuffer.huge_aligned(size) as buffer:
        buffer.fill(ints_for(size))
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages

        # Now the allocation fails on the way back to system memory.
        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        dmirror.migrate_to_system(buffer.addr, npages, buffer.mirror_ptr)
        assert buffer.read_int(page_two_of_ints) == 2048


def test_migrate_anon_huge_zero_err(dmirror: hmm.MirrorDevice, thp_size: int) -> None:
    size, npages = thp_size, thp_size // PAGE_SIZE
    page_two_of_ints = 2048 * hmm.INT_SIZE
    with HmmBuffer.huge_aligned(size, hmm.PROT_READ) as buffer:
        buffer.mirror[:] = b"\xff" * size

        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.mirror, bytes(size), "what the device read")

        assert buffer.read_int(page_two_of_ints) == 0

    with HmmBuffer.huge_aligned(size, hmm.PROT_READ) as buffer:
        # Map the huge zero page.
        assert buffer.read_int(0) == 0

        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        check_ints(buffer.contents(), bytes(size), "memory faulted back")
