"""What the HMM suites drive: test_hmm's ioctls, and the process memory those ioctls act on.

Thin on purpose. Each MirrorDevice method is one ioctl on /dev/hmm_dmirrorN; a failed ioctl
raises the HmmError subclass for its errno. HmmBuffer is the C selftest's `struct hmm_buffer`:
a range of this process's memory (`addr`, `size`) plus the `mirror` the device copies to or
from. Numbers and layouts come from `_hmm_uapi`, compiled by uapi_build against the header
of the kernel under test.
"""

from __future__ import annotations

import array
import enum
import errno
import functools
import os
import struct
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, NamedTuple

from _hmm_uapi import ffi, lib

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
INT_SIZE = array.array("i").itemsize

PROT_NONE: int = lib.PROT_NONE
PROT_READ: int = lib.PROT_READ
PROT_WRITE: int = lib.PROT_WRITE
PROT_READ_WRITE = PROT_READ | PROT_WRITE

MADV_DONTNEED: int = lib.MADV_DONTNEED
MADV_DONTFORK: int = lib.MADV_DONTFORK
MADV_FREE: int = lib.MADV_FREE
MADV_HUGEPAGE: int = lib.MADV_HUGEPAGE
MADV_NOHUGEPAGE: int = lib.MADV_NOHUGEPAGE
MADV_COLLAPSE: int | None = lib.MADV_COLLAPSE if lib.HAS_MADV_COLLAPSE else None

MREMAP_MAYMOVE: int = lib.MREMAP_MAYMOVE
MREMAP_FIXED: int = lib.MREMAP_FIXED
MREMAP_DONTUNMAP: int | None = lib.MREMAP_DONTUNMAP if lib.HAS_MREMAP_DONTUNMAP else None

FLAG_FAIL_ALLOC: int = lib.HMM_DMIRROR_FLAG_FAIL_ALLOC


class Prot(enum.IntFlag):
    """What HMM_DMIRROR_SNAPSHOT reports per page (one byte each in the mirror)."""

    NONE = lib.HMM_DMIRROR_PROT_NONE
    READ = lib.HMM_DMIRROR_PROT_READ
    WRITE = lib.HMM_DMIRROR_PROT_WRITE
    PMD = lib.HMM_DMIRROR_PROT_PMD
    PUD = lib.HMM_DMIRROR_PROT_PUD
    ZERO = lib.HMM_DMIRROR_PROT_ZERO
    DEV_PRIVATE_LOCAL = lib.HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL
    DEV_PRIVATE_REMOTE = lib.HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE
    DEV_COHERENT_LOCAL = lib.HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL
    DEV_COHERENT_REMOTE = lib.HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE
    ERROR = lib.HMM_DMIRROR_PROT_ERROR


# /proc/self/pagemap bits (Documentation/admin-guide/mm/pagemap.rst); device-private pages
# show up there as swap entries.
PAGEMAP_SWAP = 1 << 62
PAGEMAP_PRESENT = 1 << 63
PAGEMAP_PFN = (1 << 55) - 1  # a present page's frame, or a swap entry's type and offset


# ---------------------------------------------------------------------------------------
# Ioctls


@dataclass(frozen=True)
class Command:
    """The inputs of one `struct hmm_dmirror_cmd`."""

    addr: int
    ptr: int
    npages: int

    def __str__(self) -> str:
        return f"addr={self.addr:#x}, ptr={self.ptr:#x}, npages={self.npages}"


class Transfer(NamedTuple):
    """The outputs of a successful ioctl: pages copied and device page faults taken.

    A NamedTuple, not a dataclass: one is built per ioctl, and under TCG the cheaper
    construction shows in the per-call overhead."""

    cpages: int
    faults: int


class HmmError(OSError):
    """An HMM ioctl failed: `errno`, the `ioctl` name and the `command` sent say how."""

    ERRNO: ClassVar[int | None] = None

    def __init__(self, error: int, ioctl: str, command: Command) -> None:
        super().__init__(error, f"{ioctl}({command}): {os.strerror(error)}")
        self.ioctl = ioctl
        self.command = command


class InvalidArgument(HmmError):
    ERRNO = errno.EINVAL


class BadAddress(HmmError):
    ERRNO = errno.EFAULT


class Busy(HmmError):
    ERRNO = errno.EBUSY


class OutOfMemory(HmmError):
    ERRNO = errno.ENOMEM


class PermissionDenied(HmmError):
    ERRNO = errno.EPERM


class NoEntry(HmmError):
    ERRNO = errno.ENOENT


class IoctlNotInHeader(HmmError):
    """The header _hmm_uapi was built against does not define this ioctl; nothing was sent."""

    ERRNO = errno.ENOTTY


_ERRORS_BY_ERRNO: dict[int, type[HmmError]] = {
    cls.ERRNO: cls
    for cls in (InvalidArgument, BadAddress, Busy, OutOfMemory, PermissionDenied, NoEntry)
    if cls.ERRNO is not None
}


def ioctl_error(error: int, ioctl: str, command: Command) -> HmmError:
    """The exception for an ioctl that failed with `error` (an errno value)."""
    return _ERRORS_BY_ERRNO.get(error, HmmError)(error, ioctl, command)


class ProbeScope(enum.Enum):
    """What an ioctl touches, which decides whether supported_ioctls() may send it."""

    RANGE = "the pages named by addr/npages"
    OPEN_FILE = "the state of the open file it is sent on"
    DEVICE = "the whole device, for every user: never probed"


# Ioctls this wrapper knows how to probe. A header may define fewer (older kernels) or more.
PROBE_SCOPES: Mapping[str, ProbeScope] = {
    "HMM_DMIRROR_READ": ProbeScope.RANGE,
    "HMM_DMIRROR_WRITE": ProbeScope.RANGE,
    "HMM_DMIRROR_MIGRATE_TO_DEV": ProbeScope.RANGE,
    "HMM_DMIRROR_MIGRATE_TO_SYS": ProbeScope.RANGE,
    "HMM_DMIRROR_SNAPSHOT": ProbeScope.RANGE,
    "HMM_DMIRROR_EXCLUSIVE": ProbeScope.RANGE,
    "HMM_DMIRROR_CHECK_EXCLUSIVE": ProbeScope.RANGE,
    "HMM_DMIRROR_READ_UNLOCKED": ProbeScope.RANGE,
    "HMM_DMIRROR_FLAGS": ProbeScope.OPEN_FILE,
    "HMM_DMIRROR_RELEASE": ProbeScope.DEVICE,
    # The project's own ioctl (kmod/test_hmm_evict.c): moves only this device's pages among
    # those named, so nothing on the scratch page.
    "HMM_DMIRROR_EVICT_PFNS": ProbeScope.RANGE,
}

# Ioctls whose `ptr` is an input the scratch mirror cannot stand in for: probed with 0,
# which EVICT_PFNS takes as "every page of the range".
PROBED_WITHOUT_PTR = frozenset({"HMM_DMIRROR_EVICT_PFNS"})


@functools.cache
def header_ioctls() -> Mapping[str, int]:
    """Request numbers of the known ioctls that the compiled header defines."""
    requests = {}
    for name in PROBE_SCOPES:
        if hasattr(lib, name) and getattr(lib, f"HAS_{name}", True):
            requests[name] = int(getattr(lib, name))
    return requests


@dataclass(frozen=True)
class IoctlSupport:
    """Which ioctls the loaded test_hmm answers; the header and the module may disagree."""

    answered: frozenset[str]
    # Fell through to the driver's default branch (EINVAL): the module predates the ioctl.
    unknown_to_driver: frozenset[str]
    # In the header but with device-wide effects, so never sent just to probe.
    not_probed: frozenset[str]
    not_in_header: frozenset[str]


class MirrorDevice:
    """An open /dev/hmm_dmirrorN: a simulated device mirroring the opening process's memory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        # One command struct per thread, reused: the race tests share a device between
        # threads, and allocating a struct per ioctl costs more than the rest of the call.
        self._per_thread = threading.local()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> MirrorDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MirrorDevice({self.path!r}, fd={self.fd})"

    def command(self, ioctl: str, addr: int, npages: int, ptr: int = 0) -> Transfer:
        """Send the ioctl named `ioctl` (as in the header) and return what it reported."""
        __tracebackhide__ = True  # pytest shows the failing test line, not this wrapper
        request = header_ioctls().get(ioctl)
        if request is None:
            raise IoctlNotInHeader(errno.ENOTTY, ioctl, Command(addr, ptr, npages))
        cmd = getattr(self._per_thread, "cmd", None)
        if cmd is None:
            cmd = self._per_thread.cmd = ffi.new("struct hmm_dmirror_cmd *")
        cmd.addr, cmd.ptr, cmd.npages = addr, ptr, npages
        while lib.hmm_dmirror_ioctl(self.fd, request, cmd) != 0:
            error = ffi.errno
            if error != errno.EINTR:
                raise ioctl_error(error, ioctl, Command(addr, ptr, npages))
        return Transfer(cmd.cpages, cmd.faults)

    def read(self, addr: int, npages: int, ptr: int) -> Transfer:
        """The device reads `npages` at `addr` into the buffer at `ptr`, faulting them in."""
        return self.command("HMM_DMIRROR_READ", addr, npages, ptr)

    def read_unlocked(self, addr: int, npages: int, ptr: int) -> Transfer:
        """Like read, through hmm_range_fault_unlocked_timeout (7.3 and later)."""
        return self.command("HMM_DMIRROR_READ_UNLOCKED", addr, npages, ptr)

    def write(self, addr: int, npages: int, ptr: int) -> Transfer:
        """The device writes the buffer at `ptr` into `npages` at `addr`."""
        return self.command("HMM_DMIRROR_WRITE", addr, npages, ptr)

    def migrate_to_device(self, addr: int, npages: int, ptr: int) -> Transfer:
        """Migrate the pages into device memory; `ptr` receives their contents."""
        return self.command("HMM_DMIRROR_MIGRATE_TO_DEV", addr, npages, ptr)

    def migrate_to_system(self, addr: int, npages: int, ptr: int = 0) -> Transfer:
        """Migrate this device's pages in the range back to system memory."""
        return self.command("HMM_DMIRROR_MIGRATE_TO_SYS", addr, npages, ptr)

    def snapshot(self, addr: int, npages: int, ptr: int) -> Transfer:
        """Write one Prot byte per page to `ptr`, without faulting anything in."""
        return self.command("HMM_DMIRROR_SNAPSHOT", addr, npages, ptr)

    def exclusive(self, addr: int, npages: int, ptr: int) -> Transfer:
        """Map the pages exclusively for device (atomic) access; `ptr` receives them."""
        return self.command("HMM_DMIRROR_EXCLUSIVE", addr, npages, ptr)

    def check_exclusive(self, addr: int, npages: int) -> Transfer:
        """Raises PermissionDenied while the device still holds a page exclusively."""
        return self.command("HMM_DMIRROR_CHECK_EXCLUSIVE", addr, npages)

    def evict_pfns(self, addr: int, npages: int, selection: bytes | None = None) -> Transfer:
        """Move this device's pages among the `npages` at `addr` to system memory through
        migrate_device_pfns() (the project's HMM_DMIRROR_EVICT_PFNS, kmod/test_hmm_evict.c).

        `selection` is a bitmap (page i is bit i % 8 of byte i // 8, see selection_bitmap);
        None selects every page. cpages counts the pages moved, a whole large folio for any
        of its pages; pages not on this device are skipped.
        """
        if selection is None:
            return self.command("HMM_DMIRROR_EVICT_PFNS", addr, npages)
        bitmap = ffi.from_buffer(selection)
        return self.command("HMM_DMIRROR_EVICT_PFNS", addr, npages,
                            int(ffi.cast("uintptr_t", bitmap)))

    def release(self, addr: int = 0, npages: int = 1) -> Transfer:
        """Evict and remove every memory chunk of the device, whoever uses it.

        The driver ignores the range, but rejects npages == 0 before looking at the request.
        """
        return self.command("HMM_DMIRROR_RELEASE", addr, npages)

    def set_flags(self, flags: int) -> Transfer:
        """Set this open file's flags (e.g. FLAG_FAIL_ALLOC); they travel in npages.

        Flags of 0 cannot be set: the driver rejects npages == 0 before the request.
        """
        return self.command("HMM_DMIRROR_FLAGS", 0, flags)

    def supported_ioctls(self) -> IoctlSupport:
        """Probe which header ioctls this device's driver answers.

        Every probe goes through a scratch open file on a scratch page, so neither this
        file's flags nor the caller's memory change; device-wide ioctls are never sent.
        """
        requests = header_ioctls()
        answered, unknown, not_probed = set(), set(), set()
        scratch = HmmBuffer.anonymous(PAGE_SIZE)
        with scratch, MirrorDevice(self.path) as probe:
            scratch.write_int(0, 1)
            for ioctl in requests:
                if PROBE_SCOPES[ioctl] is ProbeScope.DEVICE:
                    not_probed.add(ioctl)
                    continue
                ptr = 0 if ioctl in PROBED_WITHOUT_PTR else scratch.mirror_ptr
                try:
                    probe.command(ioctl, scratch.addr, 1, ptr)
                except InvalidArgument:
                    unknown.add(ioctl)
                    continue
                except HmmError:
                    pass  # any other error still comes from a branch that knows the request
                answered.add(ioctl)
        return IoctlSupport(answered=frozenset(answered), unknown_to_driver=frozenset(unknown),
                            not_probed=frozenset(not_probed),
                            not_in_header=frozenset(PROBE_SCOPES.keys() - requests.keys()))


def selection_bitmap(pages: Iterable[int], npages: int) -> bytes:
    """The evict_pfns selection of `pages` (indices from 0) among `npages`."""
    bitmap = bytearray(-(-npages // 8))
    for page in pages:
        if not 0 <= page < npages:
            raise ValueError(f"page {page} is outside a selection of {npages} pages")
        bitmap[page // 8] |= 1 << (page % 8)
    return bytes(bitmap)


# ---------------------------------------------------------------------------------------
# Process memory


def _os_error(call: str) -> OSError:
    error = ffi.errno
    return OSError(error, f"{call}: {os.strerror(error)}")


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _unmap_all(live: list[tuple[int, int]]) -> None:
    for start, end in live:
        lib.munmap(ffi.cast("void *", start), end - start)
    live.clear()


class MemoryMapping:
    """Address space from one mmap(), unmapped part by part or all at once, never twice.

    Parts already unmapped are not unmapped again at close, since by then another mapping
    (the Python allocator's, say) may have taken their place.
    """

    def __init__(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> None:
        ptr = lib.mmap(ffi.NULL, length, prot, flags, fd, offset)
        if ptr == lib.MAP_FAILED:
            raise _os_error(f"mmap(length={length:#x}, prot={prot:#x}, flags={flags:#x})")
        self.addr = int(ffi.cast("uintptr_t", ptr))
        self.length = length
        self._live = [(self.addr, self.addr + length)]
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _unmap_all, self._live)

    @property
    def end(self) -> int:
        return self.addr + self.length

    def live_ranges(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._live)

    def _check_inside(self, addr: int, length: int) -> None:
        if not (self.addr <= addr and addr + length <= self.end):
            raise ValueError(f"[{addr:#x}, {addr + length:#x}) is outside this mapping "
                             f"[{self.addr:#x}, {self.end:#x})")

    def _forget(self, start: int, end: int) -> None:
        kept = []
        for live_start, live_end in self._live:
            if live_end <= start or end <= live_start:
                kept.append((live_start, live_end))
                continue
            if live_start < start:
                kept.append((live_start, start))
            if end < live_end:
                kept.append((end, live_end))
        self._live[:] = kept

    def _remember(self, start: int, end: int) -> None:
        self._forget(start, end)
        self._live.append((start, end))
        self._live.sort()

    def munmap(self, addr: int, length: int) -> None:
        self._check_inside(addr, length)
        with self._lock:
            if lib.munmap(ffi.cast("void *", addr), length) != 0:
                raise _os_error(f"munmap({addr:#x}, {length:#x})")
            self._forget(addr, addr + align_up(length, PAGE_SIZE))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self._check_inside(addr, length)
        if lib.mprotect(ffi.cast("void *", addr), length, prot) != 0:
            raise _os_error(f"mprotect({addr:#x}, {length:#x}, {prot:#x})")

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self._check_inside(addr, length)
        if lib.madvise(ffi.cast("void *", addr), length, advice) != 0:
            raise _os_error(f"madvise({addr:#x}, {length:#x}, {advice})")

    def mremap_fixed(self, old_addr: int, length: int, new_addr: int, flags: int) -> int:
        """Move `length` bytes to `new_addr`, which must lie in this mapping too.

        MREMAP_FIXED unmaps whatever was at the target itself, so no window opens in which
        another mapping could land there.
        """
        self._check_inside(old_addr, length)
        self._check_inside(new_addr, length)
        flags |= MREMAP_MAYMOVE | MREMAP_FIXED
        with self._lock:
            moved = lib.mremap_fixed(ffi.cast("void *", old_addr), length, length, flags,
                                     ffi.cast("void *", new_addr))
            if moved == lib.MAP_FAILED:
                raise _os_error(f"mremap({old_addr:#x}, {length:#x} -> {new_addr:#x})")
            if MREMAP_DONTUNMAP is None or not flags & MREMAP_DONTUNMAP:
                self._forget(old_addr, old_addr + length)
            self._remember(new_addr, new_addr + length)
        return int(ffi.cast("uintptr_t", moved))

    def mremap_into_hole(self, old_addr: int, length: int, new_addr: int, flags: int,
                         hole: tuple[int, int]) -> int:
        """Unmap `hole` (start, length), then move `length` bytes to `new_addr` inside it,
        as the C suite's munmap() then mremap() do, with nothing mapped there in between."""
        self._check_inside(old_addr, length)
        self._check_inside(*hole)
        flags |= MREMAP_MAYMOVE | MREMAP_FIXED
        with self._lock:
            moved = lib.mremap_into_hole(ffi.cast("void *", old_addr), length, flags,
                                         ffi.cast("void *", new_addr),
                                         ffi.cast("void *", hole[0]), hole[1])
            if moved == lib.MAP_FAILED:
                raise _os_error(f"munmap({hole[0]:#x}, {hole[1]:#x}) and mremap({old_addr:#x}, "
                                f"{length:#x} -> {new_addr:#x})")
            self._forget(hole[0], hole[0] + hole[1])
            if MREMAP_DONTUNMAP is None or not flags & MREMAP_DONTUNMAP:
                self._forget(old_addr, old_addr + length)
            self._remember(new_addr, new_addr + length)
        return int(ffi.cast("uintptr_t", moved))

    def close(self) -> None:
        with self._lock:
            self._finalizer()


_ascending_ints = b""


@functools.lru_cache(maxsize=8)
def _int_range(count: int, start: int, step: int) -> bytes:
    return array.array("i", range(start, start + count * step, step)).tobytes()


def int_sequence(count: int, start: int = 0, step: int = 1) -> bytes:
    """`count` C ints start, start + step, ...: the C suite's `ptr[i] = i` (or -i, i + c)."""
    global _ascending_ints
    if step != 1 or start < 0:
        return _int_range(count, start, step)
    # Building ints is slow under emulation: every ascending run is a slice of one sequence.
    end = start + count
    if len(_ascending_ints) < end * INT_SIZE:
        _ascending_ints = _int_range(max(end, 2 * len(_ascending_ints) // INT_SIZE), 0, 1)
    return _ascending_ints[start * INT_SIZE : end * INT_SIZE]


def int_mismatch(actual: bytes | bytearray, expected: bytes) -> str | None:
    """None when equal, else where the first differing int is and what it holds."""
    if actual == expected:
        return None
    if len(actual) != len(expected):
        return f"{len(actual)} bytes where {len(expected)} were expected"
    # Invariant: the first `equal` ints match, the first `differing` ints do not.
    equal, differing = 0, len(actual) // INT_SIZE
    while differing - equal > 1:
        middle = (equal + differing) // 2
        if actual[: middle * INT_SIZE] == expected[: middle * INT_SIZE]:
            equal = middle
        else:
            differing = middle
    index = equal
    at = slice(index * INT_SIZE, (index + 1) * INT_SIZE)
    (got,), (want,) = struct.unpack("i", actual[at]), struct.unpack("i", expected[at])
    return f"int {index} (byte {at.start}) is {got}, expected {want}"


class ContentMismatch(AssertionError):
    """Memory or a mirror does not hold the ints a check expected."""


def check_ints(actual: bytes | bytearray, expected: bytes, what: str) -> None:
    """Raise ContentMismatch naming the first differing int; cheap when all match."""
    __tracebackhide__ = True
    mismatch = int_mismatch(actual, expected)
    if mismatch is not None:
        raise ContentMismatch(f"{what}: {mismatch}")


class HmmBuffer:
    """Process memory for the device (`addr`, `size`) plus its `mirror`.

    `addr` may sit inside a larger reservation (e.g. aligned for a huge page), like the C
    suite's `buffer->ptr`; offsets in the methods below count from `addr`. The C struct's
    cpages and faults are not kept here: each ioctl returns them as a Transfer.
    """

    def __init__(self, mapping: MemoryMapping, size: int, *, addr: int | None = None,
                 fd: int = -1) -> None:
        self.mapping = mapping
        self.addr = mapping.addr if addr is None else addr
        self.size = size
        self.fd = fd
        # As large as the buffer whatever the ioctl: MIGRATE_TO_DEV copies whole pages here
        # even when the caller only wants a SNAPSHOT's bytes later.
        self.mirror = bytearray(size)
        self._mirror_cdata = ffi.from_buffer(self.mirror)
        self.mirror_ptr = int(ffi.cast("uintptr_t", self._mirror_cdata))

    # -- kinds of memory

    @classmethod
    def anonymous(cls, size: int, prot: int = PROT_READ_WRITE, *, shared: bool = False,
                  reserve: int | None = None) -> HmmBuffer:
        """MAP_ANONYMOUS, private (copy-on-write across fork) unless `shared`; `reserve`
        bytes are mapped when given, the buffer being the first `size` of them."""
        flags = lib.MAP_ANONYMOUS | (lib.MAP_SHARED if shared else lib.MAP_PRIVATE)
        return cls(MemoryMapping(reserve or size, prot, flags), size)

    @classmethod
    def file_backed(cls, size: int, prot: int = PROT_READ_WRITE, *, shared: bool = True,
                    contents: bytes = b"", directory: str = "/tmp") -> HmmBuffer:
        """An unnamed O_TMPFILE of `size` bytes in `directory`, written with `contents`
        before it is mapped; the buffer owns and closes its `fd`."""
        fd = os.open(directory, os.O_TMPFILE | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            if contents and os.pwrite(fd, contents, 0) != len(contents):
                raise OSError(errno.EIO, f"short write to the tmpfile in {directory}")
            buffer = cls.mapped(fd, size, prot, shared=shared)
        except BaseException:
            os.close(fd)
            raise
        buffer.fd = fd
        return buffer

    @classmethod
    def mapped(cls, fd: int, size: int, prot: int = PROT_READ_WRITE, *,
               shared: bool = True) -> HmmBuffer:
        """`size` bytes of the file open as `fd`, which stays the caller's."""
        flags = lib.MAP_SHARED if shared else lib.MAP_PRIVATE
        return cls(MemoryMapping(size, prot, flags, fd), size)

    @classmethod
    def between_guard_pages(cls, size: int, map_with_room: Callable[[int], HmmBuffer],
                            ) -> HmmBuffer:
        """`size` bytes mapped by `map_with_room` (given the size to map), with an
        inaccessible page on either side that fork() leaves out. Whatever the kernel does
        at the edge of a neighbouring mapping's range then lands on a guard page, never on
        the buffer."""
        room = map_with_room(size + 2 * PAGE_SIZE)
        for guard in (room.addr, room.addr + PAGE_SIZE + size):
            room.mapping.mprotect(guard, PAGE_SIZE, PROT_NONE)
            room.mapping.madvise(guard, PAGE_SIZE, MADV_DONTFORK)
        return cls(room.mapping, size, addr=room.addr + PAGE_SIZE, fd=room.fd)

    @classmethod
    def hugetlb(cls, size: int, prot: int = PROT_READ_WRITE) -> HmmBuffer:
        """Private MAP_HUGETLB memory; OSError (ENOMEM) when no huge page is free."""
        flags = lib.MAP_PRIVATE | lib.MAP_ANONYMOUS | lib.MAP_HUGETLB
        return cls(MemoryMapping(size, prot, flags), size)

    @classmethod
    def huge_aligned(cls, size: int, prot: int = PROT_READ_WRITE, *,
                     advice: int | None = MADV_HUGEPAGE, reserve: int | None = None,
                     ) -> HmmBuffer:
        """`size` bytes aligned to `size` inside a private anonymous `reserve` (2 * size by
        default), with `advice` (THP or not) given for exactly those bytes."""
        reserve = 2 * size if reserve is None else reserve
        mapping = MemoryMapping(reserve, prot, lib.MAP_PRIVATE | lib.MAP_ANONYMOUS)
        buffer = cls(mapping, size, addr=align_up(mapping.addr, size))
        if advice is not None:
            buffer.madvise(advice)
        return buffer

    # -- lifetime

    def close(self) -> None:
        self.mapping.close()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> HmmBuffer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- geometry

    @property
    def npages(self) -> int:
        return self.size // PAGE_SIZE

    def page(self, index: int) -> int:
        """Address of page `index` counted from `addr`."""
        return self.addr + index * PAGE_SIZE

    def _range(self, offset: int, length: int | None) -> tuple[int, int]:
        return self.addr + offset, self.size - offset if length is None else length

    # -- memory calls, offsets from addr

    def mprotect(self, prot: int, offset: int = 0, length: int | None = None) -> None:
        self.mapping.mprotect(*self._range(offset, length), prot)

    def madvise(self, advice: int, offset: int = 0, length: int | None = None) -> None:
        self.mapping.madvise(*self._range(offset, length), advice)

    def munmap(self, offset: int = 0, length: int | None = None) -> None:
        self.mapping.munmap(*self._range(offset, length))

    # -- contents, through the CPU (so device-private pages fault back)

    def contents(self, offset: int = 0, length: int | None = None) -> bytes:
        addr, length = self._range(offset, length)
        return ffi.buffer(ffi.cast("char *", addr), length)[:]  # type: ignore[no-any-return]

    def fill(self, data: bytes, offset: int = 0) -> None:
        ffi.memmove(ffi.cast("char *", self.addr + offset), data, len(data))

    def fill_repeated(self, pattern: bytes, offset: int = 0, length: int | None = None) -> None:
        """Fill with `pattern` over and over, without building the whole contents at once."""
        addr, length = self._range(offset, length)
        chunk = pattern * max(1, (1 << 20) // len(pattern))
        for start in range(0, length, len(chunk)):
            piece = chunk[: length - start]
            ffi.memmove(ffi.cast("char *", addr + start), piece, len(piece))

    def int_view(self, offset: int = 0, length: int | None = None) -> memoryview:
        """The memory itself as C ints: no copy, every access goes through the CPU."""
        addr, length = self._range(offset, length)
        return memoryview(ffi.buffer(ffi.cast("char *", addr), length)).cast("i")

    def read_int(self, offset: int) -> int:
        return int(ffi.cast("int *", self.addr + offset)[0])

    def write_int(self, offset: int, value: int) -> None:
        ffi.cast("int *", self.addr + offset)[0] = value

    def mirror_prots(self, npages: int | None = None) -> list[Prot]:
        """The SNAPSHOT result: one Prot per page."""
        count = self.npages if npages is None else npages
        return [Prot(byte) for byte in self.mirror[:count]]


# ---------------------------------------------------------------------------------------
# System facts the suites depend on


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def pmd_size() -> int | None:
    """Size of a PMD-mapped transparent huge page; None without THP support."""
    return _read_int("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")


def meminfo() -> dict[str, int]:
    """/proc/meminfo, values as printed (kB for sizes, counts for HugePages_*)."""
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = int(value.split()[0])
    return fields


def default_huge_page_size() -> int | None:
    """Size of the default hugetlbfs page; None without hugetlbfs."""
    kib = meminfo().get("Hugepagesize")
    return None if kib is None else kib * 1024


def hugetlb_pool(size: int) -> str:
    """sysfs directory of the pool of hugetlb pages of `size` bytes."""
    return f"/sys/kernel/mm/hugepages/hugepages-{size // 1024}kB"


def free_huge_pages(size: int) -> int:
    return _read_int(f"{hugetlb_pool(size)}/free_hugepages") or 0


# The counters that move while kswapd or kcompactd isolates and migrates pages.
RECLAIM_AND_COMPACTION_COUNTERS = ("compact_isolated", "compact_daemon_wake", "compact_stall",
                                   "pgmigrate_success", "pgscan_kswapd", "pgsteal_kswapd",
                                   "pgscan_direct")
BACKGROUND_MEMORY_DAEMONS = ("kswapd", "kcompactd")


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat") as f:
        return {name: int(value) for name, value in (line.split() for line in f)}


def reclaim_and_compaction_counters() -> dict[str, int]:
    counters = vmstat()
    return {name: counters.get(name, 0) for name in RECLAIM_AND_COMPACTION_COUNTERS}


def counters_moved(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    moved = [f"{name} +{after[name] - before[name]}" for name in before
             if after[name] != before[name]]
    return ", ".join(moved) or "none"


def _task_name_and_state(stat_path: str) -> tuple[str, str] | None:
    try:
        with open(stat_path) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return name, rest.split()[0]


@functools.cache
def _memory_daemon_stat_paths() -> tuple[str, ...]:
    """kswapd and kcompactd are kernel threads that live as long as the boot (one per node):
    found once, as scanning every task under emulation costs tens of milliseconds."""
    paths = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        path = f"/proc/{pid}/stat"
        task = _task_name_and_state(path)
        if task is not None and task[0].startswith(BACKGROUND_MEMORY_DAEMONS):
            paths.append(path)
    return tuple(paths)


def _busy_memory_daemons() -> list[str]:
    tasks = [_task_name_and_state(path) for path in _memory_daemon_stat_paths()]
    return [task[0] for task in tasks if task is not None and task[1] not in ("S", "I")]


def wait_for_memory_daemons_to_settle(timeout: float = 30.0, quiet_samples: int = 4,
                                      interval: float = 0.025) -> str | None:
    """Wait until kswapd and kcompactd sleep and their counters stay still.

    High-order allocations (THPs, test_hmm's PMD-sized backing pages) wake kswapd, which
    wakes kcompactd; compaction then holds small pages isolated while it moves them, and a
    migrate_vma_setup() running meanwhile skips them. Returns None once settled, else what
    was still moving when `timeout` ran out."""
    deadline = time.monotonic() + timeout
    previous = reclaim_and_compaction_counters()
    quiet = 0
    while quiet < quiet_samples:
        if time.monotonic() > deadline:
            busy = ", ".join(_busy_memory_daemons()) or "none"
            return f"still busy after {timeout:.0f} s: {busy}"
        time.sleep(interval)
        current = reclaim_and_compaction_counters()
        settled = current == previous and not _busy_memory_daemons()
        quiet = quiet + 1 if settled else 0
        previous = current
    return None


# /proc/kpageflags bits worth naming when a page would not migrate (KPF_* in the uapi).
_PAGE_FLAG_NAMES = {0: "locked", 5: "lru", 6: "active", 12: "anon", 15: "compound_head",
                    16: "compound_tail", 22: "thp", 24: "zero_page"}


def describe_system_pages(addr: int, pages: Iterable[int]) -> str:
    """Frame, map count and flags of some pages of this process (page indexes from `addr`):
    what may have kept them from being isolated or unmapped."""
    described = []
    for page in pages:
        entry = pagemap_entries(addr + page * PAGE_SIZE, 1)[0]
        if not entry & PAGEMAP_PRESENT:
            described.append(f"{page}: not present")
            continue
        pfn = entry & PAGEMAP_PFN
        count, flags = (struct.unpack("Q", _pread(f"/proc/{name}", pfn * 8, 8))[0]
                        for name in ("kpagecount", "kpageflags"))
        names = [name for bit, name in _PAGE_FLAG_NAMES.items() if flags >> bit & 1]
        described.append(f"{page}: pfn {pfn:#x} mapcount {count} {'|'.join(names) or '-'}")
    return "; ".join(described)


def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


@contextmanager
def pages_left_behind_explained(dmirror: MirrorDevice, buffer: HmmBuffer) -> Iterator[None]:
    """A migration of `buffer` that leaves pages behind raises NoEntry (test_hmm's ENOENT);
    this adds which pages stayed, their state and what reclaim and compaction did meanwhile."""
    counters = reclaim_and_compaction_counters()
    try:
        yield
    except NoEntry as error:
        moved = counters_moved(counters, reclaim_and_compaction_counters())
        dmirror.snapshot(buffer.addr, buffer.npages, buffer.mirror_ptr)
        behind = [i for i, prot in enumerate(buffer.mirror_prots())
                  if not prot & (Prot.DEV_PRIVATE_LOCAL | Prot.DEV_COHERENT_LOCAL)]
        error.add_note(f"{len(behind)} of {buffer.npages} pages were not migrated; the first: "
                       f"{describe_system_pages(buffer.addr, behind[:8]) or 'none'}")
        error.add_note(f"reclaim and compaction while the block ran: {moved}")
        raise


def pagemap_entries(addr: int, npages: int) -> list[int]:
    """This process's /proc/self/pagemap entries for `npages` pages from `addr`."""
    entry_size = struct.calcsize("Q")
    data = _pread("/proc/self/pagemap", addr // PAGE_SIZE * entry_size, npages * entry_size)
    return list(struct.unpack(f"{npages}Q", data))


# ---------------------------------------------------------------------------------------
# Processes


class ChildFailed(AssertionError):
    """A check run in a forked child failed; the message carries the child's traceback."""


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def describe_wait_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"


class ChildProcess:
    """A forked child running one check; join() raises ChildFailed if the check failed."""

    def __init__(self, check: Callable[[], Any]) -> None:
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_end)
            status = 0
            try:
                check()
            except BaseException:
                _write_all(write_end, traceback.format_exc().encode())
                status = 1
            # Never return into pytest: its teardown and atexit hooks belong to the parent.
            os._exit(status)
        os.close(write_end)
        self._report = read_end

    def join(self) -> None:
        with os.fdopen(self._report, "rb") as pipe:
            report = pipe.read().decode(errors="replace")
        _, status = os.waitpid(self.pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise ChildFailed(f"child {self.pid} {describe_wait_status(status)}\n{report}")


def run_in_child(check: Callable[[], Any]) -> None:
    """Run `check` in a forked child and wait; raise ChildFailed if it failed there."""
    ChildProcess(check).join()
