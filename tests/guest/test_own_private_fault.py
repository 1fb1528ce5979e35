"""A device faulting in a page that already sits in its own private memory.

A device's mirror can lack pages it migrated to itself: after an invalidation (mprotect,
here), or, for writes, when they moved as holes (read-only mirror entries). Its next access
faults them in through hmm_range_fault(), which hands back the device-private page itself,
since the device owns it; a driver then maps its own device memory. test_hmm's
dmirror_do_fault() stores that page as it stores system pages, and dmirror_do_read() or
dmirror_do_write() copies from or to it as if it had a kernel mapping. The stateful suite steers
around the call (harness.guest.model.Model.own_private_fault); this test makes it.
"""

from __future__ import annotations

from harness.guest import hmm


def test_a_device_reads_back_its_own_private_page_after_an_invalidation(
        dmirror: hmm.MirrorDevice) -> None:
    npages = 4
    expected = hmm.int_sequence(npages * hmm.PAGE_SIZE // hmm.INT_SIZE)
    with hmm.HmmBuffer.anonymous(npages * hmm.PAGE_SIZE) as buffer:
        buffer.fill(expected)
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        # The pages stay on the device; the protection change empties the mirror.
        buffer.mprotect(hmm.PROT_READ)
        buffer.mirror[:] = bytes(len(buffer.mirror))
        transfer = dmirror.read(buffer.addr, npages, buffer.mirror_ptr)
        hmm.check_ints(bytes(buffer.mirror), expected, "what the device read")
        assert (transfer.cpages, transfer.faults) == (npages, 1)


def test_a_device_writes_pages_it_took_while_they_were_never_touched(
        dmirror: hmm.MirrorDevice) -> None:
    """Untouched pages move to the device as holes: the CPU's device-private entries are
    writable, the mirror's entries read-only. The device's write then faults them in
    through hmm_range_fault(), which hands back its own device-private pages, writable."""
    npages = 4
    data = hmm.int_sequence(npages * hmm.PAGE_SIZE // hmm.INT_SIZE, 3)
    with hmm.HmmBuffer.anonymous(npages * hmm.PAGE_SIZE) as buffer:
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        assert dmirror.migrate_to_device(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        buffer.mirror[:] = data
        transfer = dmirror.write(buffer.addr, npages, buffer.mirror_ptr)
        assert (transfer.cpages, transfer.faults) == (npages, 1)
        hmm.check_ints(buffer.contents(), data, "what the CPU reads")
