"""Scratch: the coherent device's free lists before and after HMM_DMIRROR_RELEASE (delete me)."""

from __future__ import annotations

import pytest

from harness.guest import hmm
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, Prot, int_sequence

THP = 2 << 20
NPAGES = THP // PAGE_SIZE


def filled_thp() -> HmmBuffer:
    buffer = HmmBuffer.huge_aligned(THP)
    buffer.fill(int_sequence(THP // hmm.INT_SIZE))
    return buffer


def test_1_fresh_thp_is_migrated_as_small_pages(dmirror, variant):
    assert variant.is_coherent
    with filled_thp() as buffer:
        assert dmirror.migrate_to_device(buffer.addr, NPAGES, buffer.mirror_ptr).cpages == NPAGES
        assert dmirror.snapshot(buffer.addr, NPAGES, buffer.mirror_ptr).cpages == NPAGES
        prots = set(buffer.mirror_prots(NPAGES))
        print("fresh THP on device:", prots)
        assert prots == {Prot.DEV_COHERENT_LOCAL | Prot.WRITE}  # no PMD: split into 4K pages
        assert dmirror.migrate_to_system(buffer.addr, NPAGES).cpages == NPAGES


def test_2_fresh_fail_alloc_back_to_system_on_small_page(dmirror):
    with filled_thp() as buffer:
        assert dmirror.migrate_to_device(buffer.addr, NPAGES, buffer.mirror_ptr).cpages == NPAGES
        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        with pytest.raises(hmm.OutOfMemory):
            dmirror.migrate_to_system(buffer.addr, NPAGES, buffer.mirror_ptr)


def test_3_after_release_thp_is_pmd_mapped_and_cannot_come_back(dmirror):
    dmirror.release()
    with filled_thp() as buffer:
        assert dmirror.migrate_to_device(buffer.addr, NPAGES, buffer.mirror_ptr).cpages == NPAGES
        assert dmirror.snapshot(buffer.addr, NPAGES, buffer.mirror_ptr).cpages == NPAGES
        prots = set(buffer.mirror_prots(NPAGES))
        print("THP on device after release:", prots)
        assert prots == {Prot.DEV_COHERENT_LOCAL | Prot.WRITE | Prot.PMD}
        done = dmirror.migrate_to_system(buffer.addr, NPAGES)
        print("migrate_to_system of the PMD-mapped coherent THP:", done)
        assert done.cpages == 0
        # the CPU still reads it in place
        assert buffer.contents(0, 64) == int_sequence(16)


def test_4_after_release_small_pages_cannot_be_had(dmirror):
    with HmmBuffer.anonymous(4 * PAGE_SIZE) as buffer:
        buffer.fill(int_sequence(4 * PAGE_SIZE // hmm.INT_SIZE))
        with pytest.raises(hmm.NoEntry):
            dmirror.migrate_to_device(buffer.addr, 4, buffer.mirror_ptr)


def test_5_other_device_unaffected(dmirror2):
    _, device3 = dmirror2
    with HmmBuffer.anonymous(4 * PAGE_SIZE) as buffer:
        buffer.fill(int_sequence(4 * PAGE_SIZE // hmm.INT_SIZE))
        assert device3.migrate_to_device(buffer.addr, 4, buffer.mirror_ptr).cpages == 4


def test_6_after_release_fail_alloc_fallback_oopses(dmirror):
    with filled_thp() as buffer:
        dmirror.set_flags(hmm.FLAG_FAIL_ALLOC)
        dmirror.migrate_to_device(buffer.addr, NPAGES, buffer.mirror_ptr)
