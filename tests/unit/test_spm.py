"""SPM discovery on trees read off QEMU guests with soft-reserved memory (tests/unit/data/spm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import hostfacts, spm
from harness.errors import SpmError

DATA = Path(__file__).parent / "data" / "spm"
GIVEN = spm.AddressRange(0x1_0000_0000, 0x1_1FFF_FFFF)  # the guests' memmap=512M%0x100000000


def found(case: str) -> list[spm.Candidate]:
    return spm.candidates(hostfacts.machine_memory(DATA / case))


def test_the_range_memmap_soft_reserves_is_found_from_the_command_line_alone() -> None:
    memory = hostfacts.machine_memory(DATA / "guest-7.2-memmap")
    assert not any(e.name == spm.SOFT_RESERVED for e in spm.parse_iomem(memory.iomem))
    assert all(kind != spm.SOFT_RESERVED for _, _, kind in memory.firmware_memmap)
    [candidate] = found("guest-7.2-memmap")
    assert candidate.range == GIVEN
    assert candidate.sources == ("memmap= on the kernel command line",)
    assert candidate.owners == ()


def test_two_chunks_are_chosen_from_the_one_free_range() -> None:
    choice = spm.choose(found("guest-7.2-memmap"))
    assert choice.addresses == (0x1_0000_0000, 0x1_1000_0000)
    assert "holds 2 chunks" in choice.reason
    assert choice.as_json()["addresses"] == ["0x100000000", "0x110000000"]


@pytest.mark.parametrize(("case", "driver", "command"), [
    ("guest-7.2-device_dax", "device_dax", "daxctl disable-device dax0.0"),
    ("guest-7.2-kmem", "kmem", "daxctl reconfigure-device --mode=devdax --force dax0.0"),
])
def test_a_range_a_dax_driver_holds_is_refused_with_the_command_that_frees_it(
        case: str, driver: str, command: str) -> None:
    [candidate] = found(case)
    assert candidate.range == GIVEN
    assert candidate.owners == (f"dax0.0 (driver {driver})",)
    with pytest.raises(SpmError) as refused:
        spm.choose([candidate])
    assert f"dax0.0 (driver {driver})" in refused.value.problem
    assert command in refused.value.problem


def test_kmem_shows_in_iomem_but_is_named_once_by_its_dax_device() -> None:
    iomem = spm.parse_iomem((DATA / "guest-7.2-kmem/proc/iomem").read_text())
    assert [e.name for e in iomem if e.range.overlaps(GIVEN)] == ["dax0.0", "System RAM (kmem)"]
    assert len(found("guest-7.2-kmem")[0].owners) == 1


def test_no_soft_reserved_memory_says_how_to_get_some() -> None:
    memory = hostfacts.machine_memory(DATA / "guest-7.2-memmap")
    bare = spm.MachineMemory(firmware_memmap=memory.firmware_memmap, iomem=memory.iomem)
    with pytest.raises(SpmError) as refused:
        spm.choose(spm.candidates(bare))
    assert "found: none" in refused.value.problem
    assert "memmap=512M%OFFSET-1+0xefffffff" in refused.value.fix


def test_an_iomem_claim_inside_a_soft_reserved_range_is_an_owner() -> None:
    iomem = ("100000000-13fffffff : Soft Reserved\n"
             "  100000000-10fffffff : hmm_dmirror\n"
             "140000000-17fffffff : Soft Reserved\n")
    candidates = spm.candidates(spm.MachineMemory(iomem=iomem))
    assert [c.sources for c in candidates] == [("/proc/iomem",), ("/proc/iomem",)]
    assert candidates[0].owners and "hmm_dmirror" in candidates[0].owners[0]
    # One free range of 1 GiB is enough: two chunks from it.
    assert spm.choose(candidates).addresses == (0x1_4000_0000, 0x1_5000_0000)


def test_two_free_ranges_give_one_chunk_each_and_unaligned_starts_are_rounded_up() -> None:
    memory = spm.MachineMemory(firmware_memmap=(
        (0x1_0010_0000, 0x1_1FFF_FFFF, spm.SOFT_RESERVED),
        (0x2_0000_0000, 0x2_0FFF_FFFF, spm.SOFT_RESERVED)))
    choice = spm.choose(spm.candidates(memory))
    assert choice.addresses == (0x1_0020_0000, 0x2_0000_0000)


@pytest.mark.parametrize(("addresses", "wrong"), [
    ((0x1_0000_1000, 0x1_1000_0000), "not aligned to 2 MiB"),
    ((0x1_0000_0000, 0x1_1800_0000), "not inside one soft-reserved range"),
    ((0x1_0000_0000, 0x1_0800_0000), "less than 256 MiB apart"),
    ((0x1_0000_0000,), "given once"),
])
def test_spm_addresses_given_by_hand_are_checked(addresses: tuple[int, ...], wrong: str) -> None:
    with pytest.raises(SpmError) as refused:
        spm.check_given(addresses, found("guest-7.2-memmap"))
    assert wrong in refused.value.problem


def test_spm_addresses_given_by_hand_in_an_owned_range_are_refused() -> None:
    with pytest.raises(SpmError) as refused:
        spm.check_given((0x1_0000_0000, 0x1_1000_0000), found("guest-7.2-kmem"))
    assert "used by dax0.0 (driver kmem)" in refused.value.problem
    assert "daxctl reconfigure-device" in refused.value.fix


def test_spm_addresses_given_by_hand_inside_a_free_range_are_taken() -> None:
    choice = spm.check_given((0x1_1000_0000, 0x1_0000_0000), found("guest-7.2-memmap"))
    assert choice.addresses == (0x1_1000_0000, 0x1_0000_0000)
    assert choice.reason == "given with --spm-addr"
