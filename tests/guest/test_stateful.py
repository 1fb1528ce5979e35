"""The stateful suite: random sequences of HMM operations, each step checked against a model.

Hypothesis draws sequences of rules (CPU and device reads and writes, migrations both ways,
eviction through migrate_device_pfns(), exclusive access, mprotect, MADV_DONTNEED, fork,
FAIL_ALLOC, closing a device) over four buffers and the variant's two devices.
harness.guest.model says what every call must return; after every step each device's
snapshot of every buffer and its check-exclusive answer are compared with the model, byte by
byte. The C selftest checks one fixed sequence per case; here the state an earlier step left
is what the next one runs into.

`--seed` (the harness's, passed as --hmm-seed) repeats a run; `--explore N` sets the
sequences per variant. A failing sequence is shrunk by Hypothesis and written as a pytest
case to the results directory (stateful/), ready to paste into tests/guest.
"""

from __future__ import annotations

import errno as errnos
import functools
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from harness.guest import hmm, protocol
from harness.guest import model as m

# Hypothesis is imported where the machine is built, not at collection: under TCG its import
# costs every run that collects this file, whichever tests it selects, about a second.
if TYPE_CHECKING:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine

    from harness.guest.protocol import Variant

PAGE = hmm.PAGE_SIZE
# name, kind, pages. "wide" is longer than one migration batch (512 pages) and than the
# 32 pages dmirror_fault() hands hmm_range_fault() at once.
REGIONS = (("anon", m.Kind.PRIVATE, 24), ("wide", m.Kind.PRIVATE, 520),
           ("shared", m.Kind.SHARED, 12), ("file", m.Kind.FILE, 12))
STEPS_PER_SEQUENCE = 20
FAULT_AROUND = "/sys/kernel/debug/fault_around_bytes"
PROTS = {"none": hmm.PROT_NONE, "read": hmm.PROT_READ, "read-write": hmm.PROT_READ_WRITE}
MODEL_PROT = {hmm.PROT_NONE: m.PROT_NONE, hmm.PROT_READ: m.PROT_READ,
              hmm.PROT_READ_WRITE: m.PROT_READ | m.PROT_WRITE}



class StepFailed(AssertionError):
    """A call or a check disagreed with the model."""


def device_number(path: str) -> int:
    return int(path.removeprefix("/dev/hmm_dmirror"))


def stamp_bytes(stamps: Sequence[int]) -> bytes:
    return b"".join(m.page_bytes(stamp, PAGE) for stamp in stamps)


def describe_stamps(data: bytes) -> list[int | str]:
    """The stamp each page holds, or 'mixed' for a page that is not one stamp repeated."""
    found: list[int | str] = []
    for offset in range(0, len(data), PAGE):
        page = data[offset : offset + PAGE]
        first = page[:4]
        found.append(int.from_bytes(first, "little") if page == first * (PAGE // 4)
                     else "mixed")
    return found


class HmmWorld:
    """The real buffers and devices beside their model; every step is a method here, so a
    shrunk sequence replays without Hypothesis."""

    def __init__(self, variant: Variant, regions: Sequence[tuple[str, m.Kind, int]],
                 evict_supported: bool, events: protocol.EventChannel | None = None) -> None:
        self.events = events
        if events is not None:
            events.send("stateful-sequence", variant=variant.name, devices=list(
                variant.device_paths), regions=[[n, k.name, p] for n, k, p in regions],
                evict=evict_supported)
        numbers = tuple(device_number(p) for p in variant.device_paths)
        self.paths = dict(zip(numbers, variant.device_paths, strict=True))
        self.model = m.Model((numbers[0], numbers[1]), variant.is_coherent)
        self.evict_supported = evict_supported
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self.devices = {n: hmm.MirrorDevice(p) for n, p in self.paths.items()}
        self.buffers: dict[str, hmm.HmmBuffer] = {}
        for name, kind, npages in regions:
            self.model.add_region(name, kind, npages)
            self.buffers[name] = self._map(kind, npages)

    @staticmethod
    def _map(kind: m.Kind, npages: int) -> hmm.HmmBuffer:
        size = npages * PAGE
        if kind is m.Kind.FILE:
            buffer = hmm.HmmBuffer.between_guard_pages(size, hmm.HmmBuffer.file_backed)
        else:
            buffer = hmm.HmmBuffer.between_guard_pages(
                size, functools.partial(hmm.HmmBuffer.anonymous, shared=kind is m.Kind.SHARED))
        # THP would make PMD-sized parts of a buffer move and fault as one; these buffers
        # test 4 KiB pages (the kernel is built with THP "always"). Until the advice splits
        # it off, the new VMA may have merged with its neighbour (the mirror's malloc chunk,
        # say), whose first write then faulted in a huge page reaching into the buffer: the
        # split leaves those pages mapped, so they are dropped to start from no page at all.
        buffer.madvise(hmm.MADV_NOHUGEPAGE)
        buffer.madvise(hmm.MADV_DONTNEED)
        return buffer

    def close(self) -> None:
        # Hypothesis runs hundreds of sequences while it shrinks: nothing of a finished one
        # may stay behind (the mirrors alone are megabytes).
        for buffer in self.buffers.values():
            buffer.close()
        for device in self.devices.values():
            device.close()
        self.buffers.clear()
        self.devices.clear()

    def record(self, step: str, *args: Any) -> None:
        """Log the step, and stream it to the host before it runs: should the step crash or
        hang the guest, the host's events file still holds the sequence up to it."""
        self.log.append((step, args))
        if self.events is not None:
            self.events.send("stateful-step", step=step, args=list(args))

    def failure(self, message: str) -> StepFailed:
        if self.events is not None:
            self.events.send("stateful-mismatch", steps=len(self.log), message=message)
        return StepFailed(message)

    # -- checking

    def expect(self, what: str, expected: m.Expected, error: int | None,
               transfer: hmm.Transfer | None, data: bytes | None = None) -> None:
        __tracebackhide__ = True
        if expected.errno is not None or error is not None:
            if expected.errno != error:
                raise self.failure(f"{what}: errno {error_name(error)}, the model says "
                                 f"{error_name(expected.errno)}")
            return
        assert transfer is not None
        if expected.cpages is not None and transfer.cpages != expected.cpages:
            raise self.failure(f"{what}: cpages {transfer.cpages}, the model says "
                             f"{expected.cpages}")
        if expected.faults is not None and transfer.faults not in expected.faults:
            raise self.failure(f"{what}: faults {transfer.faults}, the model says "
                             f"{sorted(expected.faults)}")
        if expected.stamps is not None and data is not None:
            self.check_data(what, data, expected.stamps)

    def check_data(self, what: str, data: bytes, stamps: Sequence[int]) -> None:
        __tracebackhide__ = True
        if data != stamp_bytes(stamps):
            raise self.failure(f"{what}: pages hold {describe_stamps(data)}, the model says "
                             f"{list(stamps)}")

    def snapshot(self, device: int, name: str) -> list[int]:
        buffer = self.buffers[name]
        self.devices[device].snapshot(buffer.addr, buffer.npages, buffer.mirror_ptr)
        return list(buffer.mirror[: buffer.npages])

    def check_state(self) -> None:
        """Every device's snapshot of every buffer, and check-exclusive, as the model says."""
        __tracebackhide__ = True
        for name, region in self.model.regions.items():
            for device in self.model.devices:
                seen = self.snapshot(device, name)
                self.model.learn_writable(region, seen)
                expected = self.model.snapshot(device, region)
                wrong = [(i, f"{seen[i]:#04x}", f"{want:#04x}" if want is not None else "?")
                         for i, want in enumerate(expected) if want != seen[i]]
                if wrong:
                    raise self.failure(f"snapshot of {name} by device {device}: {len(wrong)} of "
                                     f"{len(seen)} pages differ: (page, seen, model) "
                                     f"{wrong[:8]}{' ...' if len(wrong) > 8 else ''}")
                buffer = self.buffers[name]
                error = call_errno(functools.partial(self.devices[device].check_exclusive,
                                                     buffer.addr, buffer.npages))
                want_error = self.model.check_exclusive(device, region)
                if error != want_error:
                    raise self.failure(f"check_exclusive of {name} by device {device}: errno "
                                     f"{error_name(error)}, the model says "
                                     f"{error_name(want_error)}")

    # -- hazards the kernel's own code does not survive

    def fault_hazard(self, name: str, first: int, count: int) -> bool:
        """A CPU fault on a private device page while that device's next allocation is set
        to fail: dmirror_devmem_fault() returns VM_FAULT_OOM, which the OOM killer answers.
        (A device's fault there gets -EFAULT, which the model says.)"""
        region = self.model.regions[name]
        return any(self.model.on_private_device(page) and self.model.fail_alloc[page.device]
                   for page in region.span(first, count))

    # -- steps

    def cpu_read(self, name: str, first: int, count: int) -> None:
        self.record("cpu_read", name, first, count)
        region = self.model.regions[name]
        stamps = self.model.cpu_read(region, first, count)
        self.check_data(f"CPU read of {name}[{first}:+{count}]",
                        self.buffers[name].contents(first * PAGE, count * PAGE), stamps)

    def frames(self, name: str, first: int, count: int) -> list[int | None]:
        """The frame of each page, None where no page is present (pagemap; root)."""
        entries = hmm.pagemap_entries(self.buffers[name].page(first), count)
        return [entry & hmm.PAGEMAP_PFN if entry & hmm.PAGEMAP_PRESENT else None
                for entry in entries]

    def copied_pages(self, name: str, first: int, before: Sequence[int | None]) -> set[int]:
        """Pages (region indices) present before and after a write, on another frame."""
        after = self.frames(name, first, len(before))
        return {first + i for i, (was, now) in enumerate(zip(before, after, strict=True))
                if was is not None and now is not None and was != now}

    def cpu_write(self, name: str, first: int, count: int) -> None:
        self.record("cpu_write", name, first, count)
        stamps = self.model.new_stamps(count)
        before = self.frames(name, first, count)
        self.buffers[name].fill(stamp_bytes(stamps), first * PAGE)
        self.model.cpu_write(self.model.regions[name], first, count, stamps,
                             self.copied_pages(name, first, before))

    def device_read(self, device: int, name: str, first: int, count: int) -> None:
        self.record("device_read", device, name, first, count)
        buffer = self.buffers[name]
        error, transfer = call(lambda: self.devices[device].read(
            buffer.page(first), count, buffer.mirror_ptr))
        expected = self.model.device_read(device, self.model.regions[name], first, count,
                                          transfer.faults if transfer else -1)
        self.expect(f"device {device} read of {name}[{first}:+{count}]", expected, error,
                    transfer, bytes(buffer.mirror[: count * PAGE]))

    def device_write(self, device: int, name: str, first: int, count: int) -> None:
        self.record("device_write", device, name, first, count)
        buffer = self.buffers[name]
        stamps = self.model.new_stamps(count)
        buffer.mirror[: count * PAGE] = stamp_bytes(stamps)
        before = self.frames(name, first, count)
        error, transfer = call(lambda: self.devices[device].write(
            buffer.page(first), count, buffer.mirror_ptr))
        expected = self.model.device_write(device, self.model.regions[name], first, count,
                                           stamps, self.copied_pages(name, first, before))
        self.expect(f"device {device} write of {name}[{first}:+{count}]", expected, error,
                    transfer)

    def _moved(self, device: int, name: str, candidates: list[int], to_device: bool,
               ) -> list[int]:
        """LOOSE (migration is best effort): which candidates moved, from the snapshot."""
        seen = self.snapshot(device, name)
        local = {m.SNAP_DEV_PRIVATE_LOCAL, m.SNAP_DEV_COHERENT_LOCAL}
        return [i for i in candidates if ((seen[i] & 0xF0) in local) == to_device]

    def migrate_to_device(self, device: int, name: str, first: int, count: int) -> None:
        self.record("migrate_to_device", device, name, first, count)
        region, buffer = self.model.regions[name], self.buffers[name]
        candidates = self.model.migration_candidates(device, region, first, count)
        error, transfer = call(lambda: self.devices[device].migrate_to_device(
            buffer.page(first), count, buffer.mirror_ptr))
        data = bytes(buffer.mirror[: count * PAGE])  # before the snapshot writes there
        moved = self._moved(device, name, candidates, to_device=True)
        expected = self.model.migrate_to_device(device, region, first, count, moved)
        self.expect(f"migration of {name}[{first}:+{count}] to device {device} "
                    f"({len(moved)} of {len(candidates)} candidates moved)", expected, error,
                    transfer, data)

    def migrate_to_system(self, device: int, name: str, first: int, count: int) -> None:
        self.record("migrate_to_system", device, name, first, count)
        self._back_to_system(device, name, first, count, "migration", self.model.migrate_to_system,
                             lambda addr: self.devices[device].migrate_to_system(addr, count))

    def evict(self, device: int, name: str, first: int, count: int) -> None:
        self.record("evict", device, name, first, count)
        self._back_to_system(device, name, first, count, "eviction", self.model.evict,
                             lambda addr: self.devices[device].evict_pfns(addr, count))

    def _back_to_system(self, device: int, name: str, first: int, count: int, what: str,
                        modelled: Callable[..., m.Expected],
                        action: Callable[[int], hmm.Transfer]) -> None:
        region, buffer = self.model.regions[name], self.buffers[name]
        candidates = self.model.system_candidates(device, region, first, count)
        error, transfer = call(lambda: action(buffer.page(first)))
        moved = self._moved(device, name, candidates, to_device=False)
        expected = modelled(device, region, first, count, moved)
        self.expect(f"{what} of {name}[{first}:+{count}] from device {device}", expected,
                    error, transfer)

    def exclusive(self, device: int, name: str, first: int, count: int) -> None:
        self.record("exclusive", device, name, first, count)
        buffer = self.buffers[name]
        error, transfer = call(lambda: self.devices[device].exclusive(
            buffer.page(first), count, buffer.mirror_ptr))
        expected = self.model.exclusive(device, self.model.regions[name], first, count)
        self.expect(f"exclusive access to {name}[{first}:+{count}] by device {device}",
                    expected, error, transfer, bytes(buffer.mirror[: count * PAGE]))

    def fail_next_allocation(self, device: int) -> None:
        self.record("fail_next_allocation", device)
        self.devices[device].set_flags(hmm.FLAG_FAIL_ALLOC)
        self.model.fail_alloc[device] = True

    def reopen(self, device: int) -> None:
        self.record("reopen", device)
        self.devices[device].close()
        self.model.release_device(device)
        self.devices[device] = hmm.MirrorDevice(self.paths[device])

    def mprotect(self, name: str, prot: str) -> None:
        self.record("mprotect", name, prot)
        self.buffers[name].mprotect(PROTS[prot])
        self.model.mprotect(self.model.regions[name], MODEL_PROT[PROTS[prot]])

    def dontneed(self, name: str, first: int, count: int) -> None:
        self.record("dontneed", name, first, count)
        self.buffers[name].madvise(hmm.MADV_DONTNEED, first * PAGE, count * PAGE)
        self.model.dontneed(self.model.regions[name], first, count)

    def fork_child(self, name: str, write: bool) -> None:
        self.record("fork_child", name, write)
        region, buffer = self.model.regions[name], self.buffers[name]
        self.model.fork()
        before = self.model.child_reads(region)
        stamps = self.model.child_writes(region) if write else []

        def child() -> None:
            self.check_data(f"child's read of {name}", buffer.contents(), before)
            if write:
                buffer.fill(stamp_bytes(stamps))
                self.check_data(f"child's read of {name} after its write", buffer.contents(),
                                stamps)

        hmm.run_in_child(child)

    def replay(self, steps: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self.check_state()
        for step, args in steps:
            getattr(self, step)(*args)
            self.check_state()


def call(action: Callable[[], hmm.Transfer]) -> tuple[int | None, hmm.Transfer | None]:
    try:
        return None, action()
    except hmm.HmmError as error:
        return error.errno, None


def call_errno(action: Callable[[], hmm.Transfer]) -> int | None:
    return call(action)[0]


def error_name(error: int | None) -> str:
    return "none" if error is None else errnos.errorcode.get(error, str(error))


# ---------------------------------------------------------------------------------------
# The state machine


def spans(npages: int) -> st.SearchStrategy[tuple[int, int]]:
    """(first page, count) inside a region; short ranges mostly, the whole region at times."""
    from hypothesis import strategies as st

    short = st.integers(0, npages - 1).flatmap(
        lambda first: st.tuples(st.just(first), st.integers(1, min(npages - first, 8))))
    return st.one_of(short, st.just((0, npages)),
                     st.integers(0, npages - 1).flatmap(
                         lambda first: st.tuples(st.just(first), st.just(npages - first))))


class LastSequence:
    """The steps of the sequence that ran last: Hypothesis replays the shrunk failing
    sequence last of all."""

    steps: list[tuple[str, tuple[Any, ...]]] | None = None


def machine_class(variant: Variant, regions: Sequence[tuple[str, m.Kind, int]],
                  evict_supported: bool, last: LastSequence, unsafe: bool = False,
                  events: protocol.EventChannel | None = None) -> type[RuleBasedStateMachine]:
    """The state machine. `unsafe` lets it make the calls the model knows crash the kernel
    (to find and reproduce them, `harness reproduce`), instead of steering around them."""
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    names = [name for name, _, _ in regions]
    numbers = [device_number(p) for p in variant.device_paths]
    coherent = variant.is_coherent

    class HmmMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.world = HmmWorld(variant, regions, evict_supported, events)
            last.steps = self.world.log

        def teardown(self) -> None:
            self.world.close()

        def _region(self, data: st.DataObject) -> tuple[str, int, int]:
            """A range; half the time one that holds a device page, if any region has one:
            uniform ranges would rarely come back to the pages an earlier step moved."""
            on_device = [(name, i) for name in names
                         for i, page in enumerate(self.world.model.regions[name].pages)
                         if page.where is m.Where.DEVICE]
            if bool(on_device) and data.draw(st.booleans(), label="at a device page"):
                name, index = data.draw(st.sampled_from(on_device), label="device page")
                npages = self.world.model.regions[name].npages
                first = data.draw(st.integers(max(0, index - 4), index), label="first")
                count = data.draw(st.integers(index - first + 1, min(npages - first,
                                                                     index - first + 8)),
                                  label="count")
                return name, first, count
            name = data.draw(st.sampled_from(names), label="region")
            first, count = data.draw(spans(self.world.model.regions[name].npages),
                                     label="span")
            return name, first, count

        def _prot(self, name: str) -> int:
            return self.world.model.regions[name].prot

        @invariant()
        def state_matches_the_model(self) -> None:
            self.world.check_state()

        @rule(data=st.data())
        def cpu_read(self, data: st.DataObject) -> None:
            name, first, count = self._region(data)
            if self._prot(name) & m.PROT_READ and \
                    not self.world.fault_hazard(name, first, count):
                self.world.cpu_read(name, first, count)

        @rule(data=st.data())
        def cpu_write(self, data: st.DataObject) -> None:
            name, first, count = self._region(data)
            if self._prot(name) == m.PROT_READ | m.PROT_WRITE and \
                    not self.world.fault_hazard(name, first, count):
                self.world.cpu_write(name, first, count)

        def _device_may_fault(self, device: int, name: str, first: int, count: int,
                              write: bool) -> bool:
            world = self.world
            return unsafe or not world.model.own_private_fault(
                device, world.model.regions[name], first, count, write)

        @rule(device=st.sampled_from(numbers), data=st.data())
        def device_read(self, device: int, data: st.DataObject) -> None:
            name, first, count = self._region(data)
            if self._device_may_fault(device, name, first, count, write=False):
                self.world.device_read(device, name, first, count)

        @rule(device=st.sampled_from(numbers), data=st.data())
        def device_write(self, device: int, data: st.DataObject) -> None:
            name, first, count = self._region(data)
            if self._device_may_fault(device, name, first, count, write=True):
                self.world.device_write(device, name, first, count)

        @rule(device=st.sampled_from(numbers), data=st.data())
        def migrate_to_device(self, device: int, data: st.DataObject) -> None:
            self.world.migrate_to_device(device, *self._region(data))

        @rule(device=st.sampled_from(numbers), data=st.data())
        def migrate_to_system(self, device: int, data: st.DataObject) -> None:
            self.world.migrate_to_system(device, *self._region(data))

        @precondition(lambda self: self.world.evict_supported)
        @rule(device=st.sampled_from(numbers), data=st.data())
        def evict(self, device: int, data: st.DataObject) -> None:
            self.world.evict(device, *self._region(data))

        @rule(device=st.sampled_from(numbers), data=st.data())
        def exclusive(self, device: int, data: st.DataObject) -> None:
            name, first, count = self._region(data)
            region = self.world.model.regions[name]
            on_device = any(p.where is m.Where.DEVICE for p in region.span(first, count))
            # make_device_exclusive() takes only pages in system memory here: coherent
            # device pages are a case the model does not cover yet.
            if self._prot(name) == m.PROT_READ | m.PROT_WRITE and \
                    not (coherent and on_device) and \
                    not self.world.fault_hazard(name, first, count):
                self.world.exclusive(device, name, first, count)

        @rule(device=st.sampled_from(numbers))
        def fail_next_allocation(self, device: int) -> None:
            self.world.fail_next_allocation(device)

        @rule(device=st.sampled_from(numbers))
        def reopen(self, device: int) -> None:
            self.world.reopen(device)

        @rule(name=st.sampled_from(names), prot=st.sampled_from(sorted(PROTS)))
        def mprotect(self, name: str, prot: str) -> None:
            self.world.mprotect(name, prot)

        @rule(data=st.data())
        def dontneed(self, data: st.DataObject) -> None:
            self.world.dontneed(*self._region(data))

        @rule(name=st.sampled_from(names), write=st.booleans())
        def fork_child(self, name: str, write: bool) -> None:
            region = self.world.model.regions[name]
            allowed = m.PROT_READ | m.PROT_WRITE if write else m.PROT_READ
            if region.prot & allowed == allowed and \
                    not self.world.fault_hazard(name, 0, region.npages):
                self.world.fork_child(name, write)

    return HmmMachine


# ---------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def fault_around_off() -> Iterator[bool]:
    """Whether read faults map one page only. Fault-around maps up to 16 neighbours that
    the page cache holds, a heuristic the model does not follow; without debugfs the shared
    buffers are left out and the test says so."""
    if not os.path.exists(FAULT_AROUND) and os.path.isdir("/sys/kernel/debug"):
        os.system("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null")
    try:
        with open(FAULT_AROUND) as f:
            saved = f.read().strip()
        with open(FAULT_AROUND, "w") as f:
            f.write(str(PAGE))
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        with open(FAULT_AROUND, "w") as f:
            f.write(saved)


def results_dir() -> str:
    return protocol.GUEST_RESULTS if os.path.isdir(protocol.GUEST_RESULTS) else "/tmp"


def write_replay(variant: Variant, seed: int, steps: Sequence[tuple[str, Sequence[Any]]],
                 error: BaseException) -> str:
    """The shrunk failing sequence as a pytest case; returns its path."""
    directory = os.path.join(results_dir(), "stateful")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"test_replay_{variant.name}_{seed}.py")
    lines = [f'"""Shrunk by the stateful suite from --seed {seed} ({variant.name}).',
             "", f"It failed with: {str(error).splitlines()[0] if str(error) else error!r}",
             '"""', "", "# fault_around_off is the fixture the test asks for.",
             "from tests.guest.test_stateful import fault_around_off, replay  # noqa: F401",
             "", "STEPS = ["]
    lines += [f"    ({step!r}, {tuple(args)!r})," for step, args in steps]
    lines += ["]", "", "", f"def test_replay_{seed}(variant, fault_around_off):",
              "    replay(variant, STEPS, fault_around_off)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def regions_for(fault_around_off: bool) -> list[tuple[str, m.Kind, int]]:
    return [r for r in REGIONS if fault_around_off or r[1] is m.Kind.PRIVATE]


def evict_supported(variant: Variant) -> bool:
    with hmm.MirrorDevice(variant.device_paths[0]) as device:
        return "HMM_DMIRROR_EVICT_PFNS" in device.supported_ioctls().answered


def replay(variant: Variant, steps: Sequence[tuple[str, Sequence[Any]]],
           fault_around_off: bool,
           regions: Sequence[tuple[str, m.Kind, int]] | None = None,
           events: protocol.EventChannel | None = None) -> None:
    """Run a recorded sequence once, checking every step as the state machine does."""
    world = HmmWorld(variant, regions_for(fault_around_off) if regions is None else regions,
                     evict_supported(variant), events)
    try:
        world.replay(steps)
    finally:
        world.close()


@pytest.mark.timeout(1800)
def test_sequences_match_the_model(variant: Variant, pytestconfig: pytest.Config,
                                   fault_around_off: bool,
                                   harness_events: protocol.EventChannel) -> None:
    seed = pytestconfig.getoption("hmm_seed")
    seed = random.randrange(2**32) if seed is None else int(seed)
    explore = int(pytestconfig.getoption("hmm_explore"))
    regions = regions_for(fault_around_off)
    print(f"stateful: seed {seed}, {explore} sequences of up to {STEPS_PER_SEQUENCE} steps, "
          f"regions {', '.join(r[0] for r in regions)}"
          + ("" if fault_around_off else f" (no shared regions: {FAULT_AROUND} not writable)"))
    last = LastSequence()
    unsafe = bool(pytestconfig.getoption("hmm_stateful_unsafe"))
    machine = machine_class(variant, regions, evict_supported(variant), last, unsafe,
                            harness_events)
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.stateful import run_state_machine_as_test

    factory = hypothesis_seed(seed)(machine)
    try:
        run_state_machine_as_test(factory, settings=settings(
            max_examples=explore, stateful_step_count=STEPS_PER_SEQUENCE, deadline=None,
            database=None, derandomize=False, print_blob=False,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck)))
    except BaseException as error:
        if last.steps is not None and not isinstance(error, KeyboardInterrupt):
            path = write_replay(variant, seed, last.steps, error)
            print(f"stateful: the shrunk sequence ({len(last.steps)} steps) is in {path}")
        raise
