"""The stateful suite's page model, on the sequences the kernel's C selftest checks.

Each expectation here is one hmm-tests.c asserts against a real kernel (the case is named),
so the model and the selftest agree before the model judges random sequences.
"""

from __future__ import annotations

import pytest

from harness.guest import model as m

PRIVATE = (0, 1)
COHERENT = (2, 3)


def fresh(devices: tuple[int, int] = PRIVATE, kind: m.Kind = m.Kind.PRIVATE,
          npages: int = 8) -> tuple[m.Model, m.Region]:
    world = m.Model(devices, coherent=devices == COHERENT)
    return world, world.add_region("buffer", kind, npages)


def test_a_device_read_faults_once_and_then_reads_from_its_mirror() -> None:
    # hmm-tests.c anon_read: cpages == npages, faults == 1; a second read faults no more.
    world, region = fresh()
    stamps = world.cpu_write(region, 0, 8)
    first = world.device_read(0, region, 0, 8, faults_seen=1)
    assert (first.cpages, first.faults, first.stamps) == (8, frozenset({1}), tuple(stamps))
    again = world.device_read(0, region, 0, 8, faults_seen=0)
    assert again.faults == frozenset({0})


def test_a_read_fault_on_no_page_maps_the_zero_page() -> None:
    # hmm2 snapshot: a page only read is ZERO | READ.
    world, region = fresh()
    world.device_read(0, region, 2, 1, faults_seen=1)
    assert world.snapshot(1, region)[2] == m.SNAP_ZERO | m.SNAP_READ
    assert world.snapshot(1, region)[0] == m.SNAP_NONE


def test_the_cpu_writing_the_zero_page_takes_it_from_every_mirror() -> None:
    world, region = fresh()
    world.device_read(0, region, 0, 1, faults_seen=1)
    world.cpu_write(region, 0, 1)
    assert region.pages[0].entry(0) is m.Entry.NONE
    assert world.device_read(0, region, 0, 1, faults_seen=1).faults == frozenset({1})


def test_a_migrated_private_page_is_local_to_its_device_and_hidden_from_the_other() -> None:
    # hmm2 snapshot: DEV_PRIVATE_LOCAL | WRITE for the device, NONE for the other one.
    world, region = fresh()
    world.cpu_write(region, 0, 8)
    result = world.migrate_to_device(0, region, 0, 8, moved=range(8))
    assert result.cpages == 8
    assert world.snapshot(0, region)[0] == m.SNAP_DEV_PRIVATE_LOCAL | m.SNAP_WRITE
    assert world.snapshot(1, region)[0] == m.SNAP_NONE


def test_a_coherent_page_stays_visible_to_the_other_device() -> None:
    # hmm2 snapshot, coherent: DEV_COHERENT_REMOTE | WRITE for the other device.
    world, region = fresh(COHERENT)
    world.cpu_write(region, 0, 1)
    world.migrate_to_device(3, region, 0, 1, moved=[0])
    assert world.snapshot(2, region)[0] == m.SNAP_DEV_COHERENT_REMOTE | m.SNAP_WRITE
    assert world.snapshot(3, region)[0] == m.SNAP_DEV_COHERENT_LOCAL | m.SNAP_WRITE


def test_holes_move_to_the_device_as_zeros_the_mirror_may_only_read() -> None:
    # migrate_vma_collect_hole() gives no MIGRATE_PFN_WRITE, so a device write faults.
    world, region = fresh()
    world.migrate_to_device(0, region, 0, 4, moved=range(4))
    assert region.pages[0].entry(0) is m.Entry.READ
    assert world.snapshot(0, region)[0] == m.SNAP_DEV_PRIVATE_LOCAL | m.SNAP_WRITE


def test_a_cpu_read_brings_a_private_page_back_and_empties_the_mirror() -> None:
    # anon_migrate then CPU access: the page is in system memory again.
    world, region = fresh()
    stamps = world.cpu_write(region, 0, 2)
    world.migrate_to_device(0, region, 0, 2, moved=range(2))
    assert world.cpu_read(region, 0, 2) == tuple(stamps)
    assert world.snapshot(0, region)[:2] == [m.SNAP_WRITE, m.SNAP_WRITE]
    assert region.pages[0].entry(0) is m.Entry.NONE


def test_a_failed_allocation_leaves_the_first_candidate_and_the_read_back_fails() -> None:
    # HMM_DMIRROR_FLAG_FAIL_ALLOC fails one allocation; test_hmm then cannot read it back.
    world, region = fresh()
    world.cpu_write(region, 0, 4)
    world.fail_alloc[0] = True
    candidates = world.migration_candidates(0, region, 0, 4)
    assert candidates == [1, 2, 3]
    assert world.migrate_to_device(0, region, 0, 4, moved=candidates).errno == m.ENOENT
    assert world.fail_alloc[0] is False


def test_shared_memory_does_not_migrate_and_reads_back_only_what_was_mirrored() -> None:
    # migrate_shared: -ENOENT with nothing mirrored. Seen on 7.2.13: once the device has read
    # the pages, its own migration spares its mirror (MMU_NOTIFY_MIGRATE, its owner), and
    # the read-back succeeds although nothing moved.
    world, region = fresh(kind=m.Kind.SHARED)
    world.cpu_write(region, 0, 4)
    assert world.migration_candidates(0, region, 0, 4) == []
    assert world.migrate_to_device(0, region, 0, 4, moved=[]).errno == m.ENOENT
    world.device_read(0, region, 0, 4, faults_seen=1)
    assert world.migrate_to_device(0, region, 0, 4, moved=[]).cpages == 4
    assert world.migrate_to_device(1, region, 0, 4, moved=[]).errno == m.ENOENT


def test_an_invalidation_also_erases_the_entry_of_the_page_after_it() -> None:
    # Seen on 7.2.13 (known-issues.toml: invalidation-erases-the-next-page): the CPU reading
    # pages 0-4 of six exclusive pages leaves no atomic entry; reading pages 0-3 leaves one.
    world, region = fresh()
    world.exclusive(0, region, 0, 6)
    world.cpu_read(region, 0, 4)
    assert world.check_exclusive(0, region) == m.EPERM
    world.cpu_read(region, 4, 1)
    assert region.pages[5].exclusive
    assert world.check_exclusive(0, region) is None


def test_the_last_page_of_a_region_takes_nothing_beyond_it() -> None:
    world, region = fresh()
    other = world.add_region("other", m.Kind.PRIVATE, 2)
    world.cpu_write(other, 0, 2)
    world.device_read(0, other, 0, 2, faults_seen=1)
    world.exclusive(0, region, 0, 8)
    world.cpu_read(region, 7, 1)
    assert other.pages[0].entry(0) is m.Entry.WRITE


def test_exclusive_access_holds_until_the_cpu_touches_the_page() -> None:
    # exclusive, exclusive_cow: check_exclusive fails until the CPU's access restores it.
    world, region = fresh()
    world.cpu_write(region, 0, 4)
    assert world.exclusive(0, region, 0, 4).cpages == 4
    assert world.check_exclusive(0, region) == m.EPERM
    assert world.check_exclusive(1, region) is None
    world.cpu_read(region, 0, 4)
    assert world.check_exclusive(0, region) is None


def test_a_read_only_mapping_refuses_device_writes() -> None:
    # anon_write_prot: -EPERM, and the device read-only mirror stays.
    world, region = fresh()
    world.mprotect(region, m.PROT_READ)
    assert world.device_write(0, region, 0, 2, [7, 8]).errno == m.EPERM
    assert world.snapshot(0, region)[0] == m.SNAP_NONE


def test_no_access_reports_errors_in_the_snapshot_and_faults_fail() -> None:
    # hmm2 snapshot: PROT_NONE pages are ERROR; anon_read_prot: -EFAULT.
    world, region = fresh()
    world.mprotect(region, m.PROT_NONE)
    assert set(world.snapshot(0, region)) == {m.SNAP_ERROR}
    assert world.device_read(0, region, 0, 1, faults_seen=-1).errno == m.EFAULT


def test_fork_write_protects_every_private_region_and_empties_mirrors() -> None:
    world, region = fresh()
    other = world.add_region("other", m.Kind.PRIVATE, 2)
    world.cpu_write(region, 0, 8)
    world.cpu_write(other, 0, 2)
    world.device_read(0, other, 0, 2, faults_seen=1)
    world.fork()
    assert world.snapshot(0, other) == [m.SNAP_READ, m.SNAP_READ]
    assert other.pages[0].entry(0) is m.Entry.NONE


@pytest.mark.parametrize(("copied", "entry", "faults"), [
    ({0}, m.Entry.NONE, 1),  # copied: an invalidation of page 0, which takes page 1 too
    (set(), m.Entry.READ, 0),  # reused: no invalidation, the read entries stay
])
def test_a_write_after_fork_empties_the_mirrors_only_when_it_copies_the_page(
        copied: set[int], entry: m.Entry, faults: int) -> None:
    world, region = fresh()
    world.cpu_write(region, 0, 2)
    world.fork()
    world.device_read(0, region, 0, 2, faults_seen=1)
    world.cpu_write(region, 0, 1, copied=copied)
    assert [p.entry(0) for p in region.pages[:2]] == [entry, entry]
    assert region.pages[0].writable
    assert world.device_read(0, region, 0, 2, faults_seen=faults).faults == frozenset({faults})


def test_exclusive_access_after_fork_leaves_only_its_atomic_entries() -> None:
    world, region = fresh()
    world.cpu_write(region, 0, 2)
    world.fork()
    world.device_read(1, region, 0, 2, faults_seen=1)
    world.exclusive(0, region, 0, 1)
    assert [p.entry(1) for p in region.pages[:2]] == [m.Entry.NONE, m.Entry.NONE]
    assert region.pages[0].entry(0) is m.Entry.ATOMIC


def test_the_own_private_fault_the_driver_cannot_take_is_foreseen() -> None:
    world, region = fresh()
    world.cpu_write(region, 0, 2)
    world.migrate_to_device(0, region, 0, 2, moved=range(2))
    assert not world.own_private_fault(0, region, 0, 2, write=False)
    world.mprotect(region, m.PROT_READ | m.PROT_WRITE)  # no change: no invalidation
    assert not world.own_private_fault(0, region, 0, 2, write=False)
    world.mprotect(region, m.PROT_READ)
    assert world.own_private_fault(0, region, 0, 2, write=False)
    assert not world.own_private_fault(1, region, 0, 2, write=False)


def test_closing_a_device_evicts_its_pages() -> None:
    world, region = fresh()
    world.cpu_write(region, 0, 3)
    world.migrate_to_device(0, region, 0, 3, moved=range(3))
    world.release_device(0)
    assert world.snapshot(0, region)[:3] == [m.SNAP_WRITE] * 3


def test_the_snapshot_bytes_are_the_kernels_own() -> None:
    # The model keeps its own copy of the values so that the host can load it; they must be
    # those of lib/test_hmm_uapi.h (7.2.13's, as the harness downloads it).
    import re
    from pathlib import Path

    header = (Path(__file__).parent / "data/linux-7.2.13-lib-test_hmm_uapi.h").read_text()
    values = {name: int(value, 16) for name, value in
              re.findall(r"HMM_DMIRROR_PROT_(\w+)\s*=\s*(0x[0-9A-Fa-f]+)", header)}
    copies = {name.removeprefix("SNAP_"): getattr(m, name) for name in dir(m)
              if name.startswith("SNAP_")}
    assert copies
    assert {name: values[name] for name in copies} == copies
