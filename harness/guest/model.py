"""What test_hmm and mm must do, page by page: the model the stateful suite checks against.

Pure Python, no cffi: the host's unit tests drive it too. A Model holds regions (the
suite's buffers) of pages. For each page it knows the contents (a stamp: the page holds the
stamp as every one of its ints, 0 being a page of zeros), where the page lives, whether the
CPU's pte lets writes through, and what each device's mirror holds for it. Each operation
updates that state and returns what the call must report.

The model follows lib/test_hmm.c and mm as they are:
- a device read or write faults from the first page its mirror lacks to the end of the
  range (dmirror_read/dmirror_write), so `faults` is 0 or 1;
- any invalidation of the process's address space empties every mirror over its range,
  except a migration's own: MMU_NOTIFY_MIGRATE whose owner is the mirror's device;
- and one page more: dmirror_do_update() hands the range's end to xa_for_each_range(),
  whose last index is inclusive, so the page after every invalidated range loses its entry
  too (known-issues.toml: invalidation-erases-the-next-page). The suite keeps an unused
  guard page on either side of each buffer, so that page is inside the buffer or a guard;
- migrate_vma_setup() invalidates its whole range, whatever it then moves;
- a CPU fault on a device-private page moves that one page back (dmirror_devmem_fault).

It is loose in three places only, each marked LOOSE where it is decided:
- migration is best effort: a page the kernel could move may stay put, so after a migration
  the suite tells the model, from a snapshot, which candidates moved;
- whether a write fault on a read-only anonymous page reuses it or copies it depends on
  reference counts the model cannot see; the suite tells the model which pages changed
  frames (from /proc/self/pagemap), except for make_device_exclusive()'s own write fault,
  after which the page is invalidated anyway;
- whether mprotect() makes a pte writable at once depends on PageAnonExclusive and the
  dirty bit; the snapshot tells.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

# HMM_DMIRROR_PROT_* of lib/test_hmm_uapi.h; kept here so the host can load the model.
SNAP_ERROR = 0xFF
SNAP_NONE = 0x00
SNAP_READ = 0x01
SNAP_WRITE = 0x02
SNAP_ZERO = 0x10
SNAP_DEV_PRIVATE_LOCAL = 0x20
SNAP_DEV_COHERENT_LOCAL = 0x40
SNAP_DEV_COHERENT_REMOTE = 0x50

EFAULT, EINVAL, ENOENT, ENOMEM, EOPNOTSUPP, EPERM = 14, 22, 2, 12, 95, 1
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
# migrate_vma_* and test_hmm's own loops work in batches of this many pages (PTRS_PER_PTE).
MIGRATE_BATCH = 512
# dmirror_fault() hands hmm_range_fault() this many pages at a time (its pfns[] array).
FAULT_BATCH = 32


class Kind(enum.Enum):
    PRIVATE = "private anonymous"
    SHARED = "shared anonymous"
    FILE = "shared file"

    @property
    def anonymous_vma(self) -> bool:
        """migrate_vma_* moves only pages of anonymous VMAs (vma_is_anonymous())."""
        return self is Kind.PRIVATE


class Where(enum.Enum):
    NOTHING = "no page"  # pte_none
    ZERO = "the zero page"
    SYSTEM = "system memory"
    DEVICE = "device memory"


class Entry(enum.Enum):
    """What a device's mirror (dmirror->pt) holds for a page."""

    NONE = "nothing"
    READ = "read"
    WRITE = "write"
    ATOMIC = "atomic"
    # LOOSE: READ, or NONE if the kernel copied the page on a write fault.
    MAYBE_READ = "read, or nothing"

    @property
    def present(self) -> bool:
        return self in (Entry.READ, Entry.WRITE, Entry.ATOMIC)


@dataclass
class Page:
    stamp: int = 0
    where: Where = Where.NOTHING
    device: int = -1  # with Where.DEVICE
    # The CPU's pte (or device-private entry) lets writes through; None: not known yet.
    writable: bool | None = False
    exclusive: bool = False  # a device-exclusive entry stands in for the pte
    # Shared kinds: the page cache keeps the contents while no pte maps them.
    cached: bool = False
    entries: dict[int, Entry] = field(default_factory=dict)
    # The page after this one in the address space, None past the region's end (a guard).
    following: Page | None = field(default=None, repr=False, compare=False)

    def entry(self, device: int) -> Entry:
        return self.entries.get(device, Entry.NONE)


@dataclass
class Region:
    name: str
    kind: Kind
    pages: list[Page]
    prot: int = PROT_READ | PROT_WRITE

    @property
    def npages(self) -> int:
        return len(self.pages)

    def span(self, first: int, count: int) -> list[Page]:
        return self.pages[first : first + count]


@dataclass(frozen=True)
class Expected:
    """What one call must report: an errno, or success with these values. None where the
    call reports nothing of that kind; `faults` may allow more than one value (LOOSE)."""

    errno: int | None = None
    cpages: int | None = None
    faults: frozenset[int] | None = None
    stamps: tuple[int, ...] | None = None  # the data handed back, page by page


class Model:
    def __init__(self, devices: tuple[int, int], coherent: bool) -> None:
        self.devices = devices
        self.coherent = coherent
        self.regions: dict[str, Region] = {}
        self.fail_alloc = dict.fromkeys(devices, False)
        self._next_stamp = 1

    # -- set-up and small helpers

    def add_region(self, name: str, kind: Kind, npages: int) -> Region:
        region = Region(name, kind, [Page() for _ in range(npages)])
        for page, after in zip(region.pages, region.pages[1:], strict=False):
            page.following = after
        self.regions[name] = region
        return region

    def new_stamps(self, count: int) -> list[int]:
        stamps = list(range(self._next_stamp, self._next_stamp + count))
        self._next_stamp += count
        return stamps

    @staticmethod
    def invalidate(pages: Iterable[Page], spare: int | None = None) -> None:
        """mmu notifier invalidations of the pages: every mirror forgets them, and the page
        after each contiguous run of them, except the device `spare` (a migration's owner,
        which dmirror_interval_invalidate() skips)."""
        pages = list(pages)
        ranges = {id(page) for page in pages}
        after_ranges = [page.following for page in pages
                        if page.following is not None and id(page.following) not in ranges]
        for page in pages + after_ranges:
            for device in list(page.entries):
                if device != spare:
                    page.entries[device] = Entry.NONE

    def on_private_device(self, page: Page, device: int | None = None) -> bool:
        return (not self.coherent and page.where is Where.DEVICE
                and (device is None or page.device == device))

    # -- the CPU

    def _restore_exclusive(self, page: Page) -> None:
        """The CPU (or a fault on its behalf) touches a device-exclusive entry: the pte
        comes back as the entry was, writable or not (MMU_NOTIFY_EXCLUSIVE empties every
        mirror, the holder's atomic entry included)."""
        page.exclusive = False
        self.invalidate([page])

    def _fault_back(self, page: Page) -> None:
        """A CPU fault on a device-private page: dmirror_devmem_fault() moves that page to
        system memory, erasing it from the owner's mirror; the invalidation, owned by the
        owner, empties the other mirror."""
        owner = page.device
        page.entries[owner] = Entry.NONE
        self.invalidate([page], spare=owner)
        page.where, page.device = Where.SYSTEM, -1

    def cpu_read(self, region: Region, first: int, count: int) -> tuple[int, ...]:
        """The stamps the CPU must see. Needs PROT_READ (else SIGSEGV)."""
        for page in region.span(first, count):
            if page.exclusive:
                self._restore_exclusive(page)
            if page.where is Where.NOTHING:
                if region.kind is Kind.PRIVATE:
                    page.where, page.writable, page.stamp = Where.ZERO, False, 0
                else:
                    # A read fault on a shared mapping maps the page-cache page with the
                    # VMA's protection; shmem asks for no write notification.
                    page.where, page.writable = Where.SYSTEM, bool(region.prot & PROT_WRITE)
                    page.cached = True
            elif self.on_private_device(page):
                self._fault_back(page)
        return tuple(page.stamp for page in region.span(first, count))

    def cpu_write(self, region: Region, first: int, count: int,
                  stamps: Sequence[int] | None = None, copied: Collection[int] = ()) -> list[int]:
        """The CPU writes `stamps` (new ones by default). Needs PROT_WRITE. `copied`: the
        pages (region indices) that the write left on another frame than before."""
        stamps = self.new_stamps(count) if stamps is None else list(stamps)
        for index, stamp in zip(range(first, first + count), stamps, strict=True):
            self._cpu_write_fault(region, region.pages[index], index in copied)
            region.pages[index].stamp = stamp
        return stamps

    def _cpu_write_fault(self, region: Region, page: Page, copied: bool | None) -> None:
        """`copied`: whether a write fault on a read-only page copied it (it moved to
        another frame); None where no one looked."""
        if page.exclusive:
            self._restore_exclusive(page)
        if self.on_private_device(page):
            self._fault_back(page)
        if page.where is Where.NOTHING:
            page.where, page.writable = Where.SYSTEM, True
            page.cached = region.kind is not Kind.PRIVATE
        elif page.where is Where.ZERO:
            # Copy-on-write of the zero page: the new page replaces it under an invalidation.
            self.invalidate([page])
            page.where, page.writable = Where.SYSTEM, True
        elif not page.writable:
            # LOOSE: do_wp_page() reuses the page (no invalidation) or copies it (one).
            if copied:
                self.invalidate([page])
                page.where, page.device, page.writable = Where.SYSTEM, -1, True
            elif copied is None:
                for device, entry in page.entries.items():
                    if entry is Entry.READ:
                        page.entries[device] = Entry.MAYBE_READ
                    elif entry.present:
                        page.entries[device] = Entry.NONE
                # A coherent page may have been copied to system memory.
                page.writable = None if page.where is Where.DEVICE else True
            else:
                page.writable = True

    # -- device faults (dmirror_fault through hmm_range_fault)

    def _fault_range(self, device: int, region: Region, start: int, end: int,
                     write: bool, copied: Collection[int] = ()) -> int | None:
        """dmirror_fault() over pages [start, end): hmm_range_fault() in batches of
        FAULT_BATCH pages, each batch's entries stored once the whole batch faulted. Returns
        the errno, or None.

        A private page of another device whose FAIL_ALLOC is pending cannot come back: that
        device's dmirror_devmem_fault() clears the flag and answers VM_FAULT_OOM, which
        hmm_range_fault() turns into -EFAULT. The pages of the batch before it have been
        faulted in by then; the batch stores no entry."""
        for batch in range(start, end, FAULT_BATCH):
            entries = {}
            for index in range(batch, min(batch + FAULT_BATCH, end)):
                page = region.pages[index]
                if self.on_private_device(page) and page.device != device and \
                        self.fail_alloc[page.device]:
                    self.fail_alloc[page.device] = False
                    return EFAULT
                entries[index] = self._device_fault(device, region, index, write,
                                                    index in copied)
            for index, entry in entries.items():
                region.pages[index].entries[device] = entry
        return None

    def _device_fault(self, device: int, region: Region, index: int, write: bool,
                      copied: bool) -> Entry:
        """hmm_range_fault() with HMM_PFN_REQ_FAULT for one page: the entry that
        dmirror_do_fault() then stores."""
        page = region.pages[index]
        assert not self.on_private_device(page, device), \
            "test_hmm cannot fault its own private page"
        # The fault the CPU would take: the same restores, migrations back and copies.
        if write:
            self._cpu_write_fault(region, page, copied)
        else:
            self.cpu_read(region, index, 1)
        return Entry.WRITE if page.writable else Entry.READ

    def own_private_fault(self, device: int, region: Region, first: int, count: int,
                          write: bool) -> bool:
        """The call would have test_hmm fault in a page on its own private memory.

        dmirror_do_fault() stores the device page hmm_range_fault() returns and
        dmirror_do_read() then copies from it as if it were system memory: an Oops on
        7.2 (known-issues.toml: own-private-page-fault). The suite does not make that call.
        """
        fault_from = self._first_missing(device, region, first, count, write)
        if fault_from is None:
            return False
        return any(self.on_private_device(page, device)
                   for page in region.span(fault_from, first + count - fault_from))

    @staticmethod
    def _first_missing(device: int, region: Region, first: int, count: int,
                       write: bool) -> int | None:
        for index in range(first, first + count):
            entry = region.pages[index].entry(device)
            if entry is Entry.WRITE or (not write and entry.present):
                continue
            return index
        return None

    def device_read(self, device: int, region: Region, first: int, count: int,
                    faults_seen: int) -> Expected:
        """`faults_seen` is what the call reported: it settles MAYBE_READ entries, and is
        checked against the returned `faults` all the same."""
        span = region.span(first, count)
        maybe = [page for page in span if page.entry(device) is Entry.MAYBE_READ]
        if maybe and faults_seen == 0 and all(
                p.entry(device).present or p.entry(device) is Entry.MAYBE_READ for p in span):
            for page in maybe:
                page.entries[device] = Entry.READ
            return Expected(cpages=count, faults=frozenset({0}),
                            stamps=tuple(p.stamp for p in span))
        fault_from = self._first_missing(device, region, first, count, write=False)
        if fault_from is None:
            return Expected(cpages=count, faults=frozenset({0}),
                            stamps=tuple(p.stamp for p in span))
        if not region.prot & PROT_READ:
            return Expected(errno=EFAULT)
        if (error := self._fault_range(device, region, fault_from, first + count, False)):
            return Expected(errno=error)
        return Expected(cpages=count, faults=frozenset({0, 1} if maybe else {1}),
                        stamps=tuple(p.stamp for p in span))

    def device_write(self, device: int, region: Region, first: int, count: int,
                     stamps: Sequence[int], copied: Collection[int] = ()) -> Expected:
        """The device writes `stamps`. Pages before the first one its mirror cannot write
        are written even when the fault then fails (dmirror_do_write copies page by page).
        `copied` as for cpu_write."""
        fault_from = self._first_missing(device, region, first, count, write=True)
        written = count if fault_from is None else fault_from - first
        for page, stamp in zip(region.span(first, written), stamps, strict=False):
            page.stamp = stamp
        if fault_from is None:
            return Expected(cpages=count, faults=frozenset({0}))
        if not region.prot & PROT_READ:
            return Expected(errno=EFAULT)
        if not region.prot & PROT_WRITE:
            return Expected(errno=EPERM)
        if (error := self._fault_range(device, region, fault_from, first + count, True,
                                       copied)):
            return Expected(errno=error)
        for page, stamp in zip(region.span(first, count), stamps, strict=True):
            page.stamp = stamp
        return Expected(cpages=count, faults=frozenset({1}))

    # -- migration

    def migration_candidates(self, device: int, region: Region, first: int,
                             count: int) -> list[int]:
        """Pages migrate_to_device may move (indices into the region): anonymous pages in
        system memory, the zero page and holes; the first of them stays put when the
        device's FAIL_ALLOC flag is set."""
        if not region.prot & PROT_READ or not region.kind.anonymous_vma:
            return []
        found = [i for i in range(first, first + count)
                 if not region.pages[i].exclusive
                 and region.pages[i].where in (Where.NOTHING, Where.ZERO, Where.SYSTEM)]
        if found and self.fail_alloc[device]:
            return found[1:]
        return found

    def migrate_to_device(self, device: int, region: Region, first: int, count: int,
                          moved: Iterable[int]) -> Expected:
        """The pages in `moved` (a subset of migration_candidates, read off a snapshot)
        went to `device`."""
        if not region.prot & PROT_READ:
            return Expected(errno=EINVAL)
        span = region.span(first, count)
        if self.fail_alloc[device] and region.kind.anonymous_vma and any(
                p.where in (Where.NOTHING, Where.ZERO, Where.SYSTEM) and not p.exclusive
                for p in span):
            self.fail_alloc[device] = False
        self.invalidate(span, spare=device)
        for index in moved:
            page = region.pages[index]
            # A hole or the zero page moves without MIGRATE_PFN_WRITE: the mirror may only
            # read it, while the CPU's device-private entry follows the VMA.
            mirror_write = page.where is Where.SYSTEM and bool(page.writable)
            if page.where is not Where.SYSTEM:
                page.writable = bool(region.prot & PROT_WRITE)
                page.stamp = 0
            page.where, page.device = Where.DEVICE, device
            page.entries[device] = Entry.WRITE if mirror_write else Entry.READ
        return self._read_back(device, region, first, count)

    def _read_back(self, device: int, region: Region, first: int, count: int) -> Expected:
        """migrate_to_device and exclusive hand back what the mirror then holds
        (dmirror_do_read): all of it, or ENOENT at the first page it lacks."""
        span = region.span(first, count)
        if not all(page.entry(device).present for page in span):
            return Expected(errno=ENOENT)
        return Expected(cpages=count, stamps=tuple(p.stamp for p in span))

    def system_candidates(self, device: int, region: Region, first: int,
                          count: int) -> list[int]:
        """Pages migrate_to_system or evict_pfns may move: the device's own."""
        if not region.prot & PROT_READ:
            return []
        return [i for i in range(first, first + count)
                if region.pages[i].where is Where.DEVICE and region.pages[i].device == device]

    def migrate_to_system(self, device: int, region: Region, first: int, count: int,
                          moved: Iterable[int]) -> Expected:
        if not region.prot & PROT_READ:
            return Expected(errno=EINVAL)
        moved = set(moved)
        for start in range(first, first + count, MIGRATE_BATCH):
            batch = range(start, min(start + MIGRATE_BATCH, first + count))
            self.invalidate(region.span(batch.start, len(batch)), spare=device)
            owned = [i for i in batch if region.pages[i].where is Where.DEVICE
                     and region.pages[i].device == device]
            if owned and self.fail_alloc[device]:
                # dmirror_devmem_fault_alloc_and_copy() fails the batch with VM_FAULT_OOM.
                self.fail_alloc[device] = False
                return Expected(errno=ENOMEM)
            for index in moved & set(batch):
                self._to_system(region.pages[index])
        return Expected(cpages=len(moved))

    @staticmethod
    def _to_system(page: Page) -> None:
        page.entries[page.device] = Entry.NONE
        page.where, page.device = Where.SYSTEM, -1

    def evict(self, device: int, region: Region, first: int, count: int,
              moved: Iterable[int]) -> Expected:
        """HMM_DMIRROR_EVICT_PFNS: migrate_device_pfns() unmaps through rmap, an
        invalidation that spares no mirror."""
        if not region.prot & PROT_READ:
            # hmm_range_fault() reports the pages as errors: nothing is collected.
            return Expected(cpages=0, faults=frozenset({0}))
        moved = list(moved)
        for index in moved:
            page = region.pages[index]
            self.invalidate([page])
            self._to_system(page)
        return Expected(cpages=len(moved), faults=frozenset({0}))

    def release_device(self, device: int) -> None:
        """The device file closes: dmirror_fops_release() evicts every chunk of the device
        to system memory, and the file's mirror goes with it."""
        for region in self.regions.values():
            for page in region.pages:
                if page.where is Where.DEVICE and page.device == device:
                    self.invalidate([page])
                    page.where, page.device = Where.SYSTEM, -1
                page.entries[device] = Entry.NONE
        self.fail_alloc[device] = False

    # -- exclusive access

    def exclusive(self, device: int, region: Region, first: int, count: int) -> Expected:
        """make_device_exclusive() on each page: a write fault through GUP, then the
        device-exclusive entry (an invalidation), then test_hmm's atomic entry. Only
        private anonymous folios can be made exclusive: on a shared mapping the first page
        is faulted in for writing, then refused."""
        if region.kind is not Kind.PRIVATE:
            self._cpu_write_fault(region, region.pages[first], None)
            return Expected(errno=EOPNOTSUPP)
        for page in region.span(first, count):
            if page.exclusive:
                self._restore_exclusive(page)
            self._cpu_write_fault(region, page, None)
            self.invalidate([page])
            page.exclusive, page.writable = True, True
            page.entries[device] = Entry.ATOMIC
        return self._read_back(device, region, first, count)

    def check_exclusive(self, device: int, region: Region) -> int | None:
        """The errno HMM_DMIRROR_CHECK_EXCLUSIVE must give over the whole region."""
        held = any(page.entry(device) is Entry.ATOMIC for page in region.pages)
        return EPERM if held else None

    # -- address-space calls

    def mprotect(self, region: Region, prot: int) -> None:
        if prot == region.prot:
            return  # mprotect_fixup() leaves a VMA whose flags do not change alone
        self.invalidate(region.pages)
        for page in region.pages:
            if page.where in (Where.SYSTEM, Where.DEVICE):
                if not prot & PROT_WRITE:
                    page.writable = False
                elif not page.exclusive and not self.on_private_device(page) \
                        and not page.writable:
                    page.writable = None  # LOOSE: upgraded at once, or on the next write
        region.prot = prot

    def dontneed(self, region: Region, first: int, count: int) -> None:
        span = region.span(first, count)
        self.invalidate(span)
        for page in span:
            page.where, page.device, page.exclusive = Where.NOTHING, -1, False
            page.writable = False
            if region.kind is Kind.PRIVATE or not page.cached:
                page.stamp = 0

    def fork(self) -> None:
        """fork(): every private mapping of the process is write-protected for
        copy-on-write, under an invalidation (device-private entries become read-only, and
        device-exclusive entries are restored first, by copy_page_range())."""
        for region in self.regions.values():
            if region.kind is not Kind.PRIVATE:
                continue
            self.invalidate(region.pages)
            for page in region.pages:
                page.exclusive = False
                if page.where in (Where.SYSTEM, Where.DEVICE):
                    page.writable = False

    def child_reads(self, region: Region) -> tuple[int, ...]:
        """What the forked child must read of the whole region. Its faults move private
        device pages of a private region back to system memory for both processes."""
        for page in region.pages:
            if region.kind is Kind.PRIVATE and self.on_private_device(page):
                self._fault_back(page)
        return tuple(page.stamp for page in region.pages)

    def child_writes(self, region: Region) -> list[int]:
        """The child then writes the whole region; only a shared region shows it after."""
        stamps = self.new_stamps(region.npages)
        if region.kind is not Kind.PRIVATE:
            for page, stamp in zip(region.pages, stamps, strict=True):
                if page.where is Where.NOTHING:
                    page.cached = True
                page.stamp = stamp
        return stamps

    # -- observations

    def snapshot(self, device: int, region: Region) -> list[int | None]:
        """HMM_DMIRROR_SNAPSHOT's byte per page; None where the model does not know the pte
        is writable (the suite then learns it with learn_writable)."""
        return [self._snapshot_byte(device, region, page) for page in region.pages]

    def _snapshot_byte(self, device: int, region: Region, page: Page) -> int | None:
        if not region.prot & PROT_READ:
            return SNAP_ERROR
        if page.exclusive or page.where is Where.NOTHING:
            return SNAP_NONE
        if page.where is Where.ZERO:
            return SNAP_ZERO | SNAP_READ
        if page.writable is None:
            return None
        access = SNAP_WRITE if page.writable else SNAP_READ
        if page.where is Where.SYSTEM:
            return access
        local = page.device == device
        if self.coherent:
            return access | (SNAP_DEV_COHERENT_LOCAL if local else SNAP_DEV_COHERENT_REMOTE)
        # Another device's private page is not the caller's to see: hmm_range_fault()
        # reports it as not present.
        return access | SNAP_DEV_PRIVATE_LOCAL if local else SNAP_NONE

    def learn_writable(self, region: Region, observed: Sequence[int]) -> None:
        """Settle the LOOSE writable bits from a snapshot (by either device)."""
        for page, byte in zip(region.pages, observed, strict=True):
            if page.writable is None and byte != SNAP_NONE:
                page.writable = bool(byte & SNAP_WRITE)
                if page.where is Where.DEVICE and byte & 0xF0 not in (
                        SNAP_DEV_COHERENT_LOCAL, SNAP_DEV_COHERENT_REMOTE):
                    page.where, page.device = Where.SYSTEM, -1


def page_bytes(stamp: int, page_size: int) -> bytes:
    """A page holding `stamp` in every 4-byte int (little endian), as the suite writes it."""
    return stamp.to_bytes(4, "little") * (page_size // 4)
