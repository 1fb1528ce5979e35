"""Pure: which soft-reserved ranges of a machine test_hmm may use as device-coherent memory.

Vendors' machines describe coherent device memory (CXL expanders, accelerators' HBM) as
"specific purpose" memory (EFI_MEMORY_SP), which Linux keeps as soft-reserved instead of
System RAM. test_hmm's coherent mode takes one start address per device (spm_addr_dev0 and
spm_addr_dev1) and maps DEVMEM_CHUNK_SIZE (256 MiB) of device pages there with
memremap_pages(), which needs the start aligned to a memory subsection (2 MiB).

Where a kernel shows those ranges differs:
- the firmware's own map, /sys/firmware/memmap/N/{start,end,type}, type "Soft Reserved";
- /proc/iomem, "Soft Reserved" (kernels before 7.x; 7.2 keeps them out of iomem);
- `memmap=SIZE%OFFSET-OLDTYPE+0xefffffff` on the command line, which turns RAM into
  soft-reserved memory by hand (the QEMU guests of this project do so); the firmware map
  does not show that;
- device-dax devices that dax_hmem or a CXL region made of a range
  (/sys/bus/dax/devices/daxX.Y/{resource,size}, and their driver).

A range a driver owns is refused, with the command that releases it: device_dax and kmem
(a dax device), a CXL region, or any /proc/iomem entry inside or over the range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.errors import SpmError

CHUNK_SIZE = 256 << 20  # test_hmm's DEVMEM_CHUNK_SIZE
ALIGNMENT = 2 << 20  # a memory subsection: memremap_pages()'s granularity
DEVICES = 2  # test_hmm's two coherent devices
SOFT_RESERVED = "Soft Reserved"
SOFT_RESERVED_E820_TYPE = 0xEFFFFFFF

_IOMEM_LINE = re.compile(
    r"^(?P<indent> *)(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+) : (?P<name>.*)$")
_MEMMAP_SOFT_RESERVE = re.compile(
    r"^memmap=(?P<size>\d+[KMGkmg]?)%(?P<offset>(?:0x)?[0-9a-fA-F]+[KMGkmg]?)"
    r"(?:-(?P<old>\d+|0x[0-9a-fA-F]+))?\+(?P<new>\d+|0x[0-9a-fA-F]+)$")


@dataclass(frozen=True)
class AddressRange:
    start: int
    end: int  # inclusive, as the kernel prints it

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def overlaps(self, other: AddressRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def contains(self, other: AddressRange) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end:#x} ({self.size >> 20} MiB)"


@dataclass(frozen=True)
class IomemEntry:
    range: AddressRange
    name: str
    depth: int


@dataclass(frozen=True)
class DaxDevice:
    name: str  # dax0.0
    range: AddressRange
    driver: str | None  # device_dax, kmem, or None when unbound
    path: str  # its sysfs device path, which says what made it (hmem.N, a CXL region)


@dataclass(frozen=True)
class MachineMemory:
    """What the acting code read off the machine, as text or small facts."""

    firmware_memmap: tuple[tuple[int, int, str], ...] = ()  # (start, end inclusive, type)
    iomem: str = ""
    cmdline: str = ""
    dax_devices: tuple[DaxDevice, ...] = ()
    cxl_regions: tuple[tuple[str, AddressRange], ...] = ()


@dataclass(frozen=True)
class Candidate:
    range: AddressRange
    sources: tuple[str, ...]
    owners: tuple[str, ...] = ()
    release: tuple[str, ...] = ()  # commands that free it, one per owner


@dataclass(frozen=True)
class Choice:
    addresses: tuple[int, ...]
    reason: str
    candidates: tuple[Candidate, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {
            "addresses": [f"{a:#x}" for a in self.addresses],
            "chunk_bytes": CHUNK_SIZE,
            "reason": self.reason,
            "found": [{"range": [f"{c.range.start:#x}", f"{c.range.end:#x}"],
                       "size_mib": c.range.size >> 20, "sources": list(c.sources),
                       "owners": list(c.owners)} for c in self.candidates],
        }


def parse_iomem(text: str) -> list[IomemEntry]:
    """/proc/iomem as read by root (others see zeros: the caller checks for root first)."""
    entries = []
    for line in text.splitlines():
        if match := _IOMEM_LINE.match(line):
            entries.append(IomemEntry(
                AddressRange(int(match["start"], 16), int(match["end"], 16)),
                match["name"].strip(), len(match["indent"]) // 2))
    return entries


def _size(text: str) -> int:
    units = {"k": 10, "m": 20, "g": 30}
    suffix = text[-1].lower()
    if suffix in units:
        return int(text[:-1], 0) << units[suffix]
    return int(text, 0)


def memmap_soft_reserved(cmdline: str) -> list[AddressRange]:
    """The ranges `memmap=SIZE%OFFSET-OLD+0xefffffff` options turn into soft-reserved."""
    ranges = []
    for word in cmdline.split():
        match = _MEMMAP_SOFT_RESERVE.match(word)
        if match and int(match["new"], 0) == SOFT_RESERVED_E820_TYPE:
            start = _size(match["offset"])
            ranges.append(AddressRange(start, start + _size(match["size"]) - 1))
    return ranges


def _release_command(owner: DaxDevice) -> str:
    if owner.driver == "kmem":
        return (f"daxctl reconfigure-device --mode=devdax --force {owner.name} && "
                f"daxctl disable-device {owner.name}")
    return f"daxctl disable-device {owner.name}"


def candidates(memory: MachineMemory) -> list[Candidate]:
    """Every soft-reserved range the machine shows, merged across sources, with owners."""
    found: dict[AddressRange, list[str]] = {}

    def add(found_range: AddressRange, source: str) -> None:
        for known in found:
            if known == found_range:
                found[known].append(source)
                return
        found[found_range] = [source]

    for start, end, kind in memory.firmware_memmap:
        if kind == SOFT_RESERVED:
            add(AddressRange(start, end), "/sys/firmware/memmap")
    iomem = parse_iomem(memory.iomem)
    for entry in iomem:
        if entry.name == SOFT_RESERVED:
            add(entry.range, "/proc/iomem")
    for memmap_range in memmap_soft_reserved(memory.cmdline):
        add(memmap_range, "memmap= on the kernel command line")
    for dax in memory.dax_devices:
        if not any(known.contains(dax.range) for known in found):
            add(dax.range, f"/sys/bus/dax/devices/{dax.name}")
    return [_with_owners(found_range, tuple(sources), memory, iomem)
            for found_range, sources in sorted(found.items(), key=lambda item: item[0].start)]


def _with_owners(found_range: AddressRange, sources: tuple[str, ...], memory: MachineMemory,
                 iomem: Sequence[IomemEntry]) -> Candidate:
    owners: list[str] = []
    release: list[str] = []
    for dax in memory.dax_devices:
        if dax.driver and dax.range.overlaps(found_range):
            owners.append(f"{dax.name} (driver {dax.driver})")
            release.append(_release_command(dax))
    for name, region_range in memory.cxl_regions:
        if region_range.overlaps(found_range):
            owners.append(f"CXL {name}")
            release.append(f"cxl disable-region {name}")
    named = [dax.range for dax in memory.dax_devices if dax.driver] + \
        [region for _, region in memory.cxl_regions]
    for entry in iomem:
        # A resource inside the range is a claim on it; one around it is a parent (a PCI or
        # CXL window), not an owner.
        if entry.name == SOFT_RESERVED or not found_range.contains(entry.range) or \
                any(entry.range.overlaps(known) for known in named):
            continue
        owners.append(f"/proc/iomem {entry.name!r} {entry.range}")
        release.append(f"unload or unbind the driver that registered {entry.name!r}")
    return Candidate(found_range, sources, tuple(owners), tuple(release))


def _aligned_chunks(found_range: AddressRange) -> list[int]:
    start = -(-found_range.start // ALIGNMENT) * ALIGNMENT
    chunks = []
    while start + CHUNK_SIZE - 1 <= found_range.end:
        chunks.append(start)
        start += CHUNK_SIZE
    return chunks


def choose(found: Sequence[Candidate], devices: int = DEVICES) -> Choice:
    """Two 256 MiB chunks: one from each of the first free ranges that hold one, as two
    devices would be, or both from one range that holds two. SpmError if there are not."""
    free = [c for c in found if not c.owners]
    owned = [c for c in found if c.owners]
    holding = [(c, _aligned_chunks(c.range)) for c in free]
    holding = [(c, chunks) for c, chunks in holding if chunks]
    if len(holding) >= devices:
        picked = tuple(chunks[0] for _, chunks in holding[:devices])
        return Choice(picked, f"the first {devices} free soft-reserved ranges of at least "
                      f"{CHUNK_SIZE >> 20} MiB, one chunk each", tuple(found))
    roomy = [(c, chunks) for c, chunks in holding if len(chunks) >= devices]
    if roomy:
        candidate, chunks = roomy[0]
        return Choice(tuple(chunks[:devices]), f"one free soft-reserved range "
                      f"({candidate.range}) holds {devices} chunks of {CHUNK_SIZE >> 20} MiB",
                      tuple(found))
    if owned:
        lines = [f"  {c.range}: used by {', '.join(c.owners)}; release with: "
                 f"{'; '.join(c.release)}" for c in owned]
        raise SpmError("the soft-reserved memory test_hmm could use is in use:\n"
                       + "\n".join(lines),
                       "release a range with the command shown, or name free ones with "
                       "--spm-addr ADDR twice")
    shown = ", ".join(str(c.range) for c in found) or "none"
    raise SpmError(f"test_hmm's coherent mode needs {devices} chunks of {CHUNK_SIZE >> 20} MiB "
                   f"of soft-reserved memory, {ALIGNMENT >> 20} MiB aligned; found: {shown}",
                   "run on a machine whose firmware marks device memory specific-purpose "
                   "(EFI_MEMORY_SP), or soft-reserve RAM by hand with "
                   "memmap=512M%OFFSET-1+0xefffffff on the kernel command line, or use "
                   "--mode private")


def check_given(addresses: Iterable[int], found: Sequence[Candidate],
                devices: int = DEVICES) -> Choice:
    """--spm-addr, given once per device: each aligned, its chunk inside one soft-reserved
    range that no driver owns, and the chunks apart."""
    addresses = tuple(addresses)
    if len(addresses) != devices:
        given = "once" if len(addresses) == 1 else f"{len(addresses)} times"
        raise SpmError(f"--spm-addr was given {given}; test_hmm has {devices} "
                       "coherent devices", "give --spm-addr once per device, e.g. "
                       "--spm-addr 0x100000000 --spm-addr 0x110000000")
    chunks = [AddressRange(a, a + CHUNK_SIZE - 1) for a in addresses]
    for address, chunk in zip(addresses, chunks, strict=True):
        if address % ALIGNMENT:
            raise SpmError(f"--spm-addr {address:#x} is not aligned to {ALIGNMENT >> 20} MiB",
                           f"give {address - address % ALIGNMENT:#x} or "
                           f"{address - address % ALIGNMENT + ALIGNMENT:#x}")
        inside = [c for c in found if c.range.contains(chunk)]
        if not inside:
            shown = ", ".join(str(c.range) for c in found) or "none"
            raise SpmError(f"--spm-addr {address:#x}: the {CHUNK_SIZE >> 20} MiB from there "
                           f"({chunk}) are not inside one soft-reserved range; found: {shown}",
                           "give an address whose 256 MiB lie inside a range shown")
        if inside[0].owners:
            raise SpmError(f"--spm-addr {address:#x} lies in {inside[0].range}, used by "
                           f"{', '.join(inside[0].owners)}",
                           f"release it with: {'; '.join(inside[0].release)}")
    if chunks[0].overlaps(chunks[1]):
        raise SpmError(f"--spm-addr {addresses[0]:#x} and {addresses[1]:#x} are less than "
                       f"{CHUNK_SIZE >> 20} MiB apart", "give chunks that do not overlap")
    return Choice(addresses, "given with --spm-addr", tuple(found))
