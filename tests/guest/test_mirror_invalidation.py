"""What an invalidation of one range does to the mirror's entries beyond it.

The mmu notifier hands a driver the half-open range [start, end). A mirror must forget the
pages in it, and keep the others: the page right after the range is still mapped as it was,
and the device may go on using its entry.
"""

from __future__ import annotations

from harness.guest import hmm


def still_exclusive(dmirror: hmm.MirrorDevice, addr: int, npages: int) -> bool:
    try:
        dmirror.check_exclusive(addr, npages)
    except hmm.PermissionDenied:
        return True
    return False


def test_the_cpu_taking_back_one_exclusive_page_leaves_the_next_one_exclusive(
        dmirror: hmm.MirrorDevice) -> None:
    npages = 2
    with hmm.HmmBuffer.anonymous(npages * hmm.PAGE_SIZE) as buffer:
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        buffer.fill(hmm.int_sequence(npages * hmm.PAGE_SIZE // hmm.INT_SIZE))
        assert dmirror.exclusive(buffer.addr, npages, buffer.mirror_ptr).cpages == npages
        assert still_exclusive(dmirror, buffer.page(1), 1), "page 1 was not made exclusive"
        # The CPU's read of page 0 restores its pte: an invalidation of page 0 alone.
        buffer.contents(0, hmm.PAGE_SIZE)
        assert not still_exclusive(dmirror, buffer.page(0), 1), "page 0 is still exclusive"
        assert still_exclusive(dmirror, buffer.page(1), 1), (
            "the mirror forgot page 1's atomic entry when the CPU took back page 0, although "
            "page 1 is still mapped device-exclusive")
