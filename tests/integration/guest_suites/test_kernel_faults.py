"""Run in the guest by tests/integration/test_kernel_faults.py: cases that make the kernel fail
on purpose through tests/kmod/hmm_faults (a WARN, a soft lockup, an Oops, an uninterruptible
sleep), each followed by an ordinary case through test_hmm that must still run and pass.

Order matters: pytest runs the cases in file order, and the host test checks which boot of
the guest ran each one. The cases after the Oops and after the hang run in fresh guests; the
taint flags tell them apart from the guest that warned.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.guest.faults import Faults, load
from harness.guest.hmm import MirrorDevice

# Short, so that the host watchdog steps in at HANG_TIMEOUT + 60 s; the kernel's hung task
# detector (30 s in the harness's guest) reports the sleeper before that.
HANG_TIMEOUT = 10
SPIN_SECONDS = 4
# Bits of /proc/sys/kernel/tainted (Documentation/admin-guide/tainted-kernels.rst).
TAINT_DIE, TAINT_WARN, TAINT_SOFTLOCKUP = 1 << 7, 1 << 9, 1 << 14


def tainted() -> int:
    with open("/proc/sys/kernel/tainted") as f:
        return int(f.read())


def assert_mirror_opens(variant) -> None:
    with MirrorDevice(variant.device_paths[0]) as device:
        assert device.fd >= 0


def assert_fresh_kernel(after: str) -> None:
    assert not tainted() & (TAINT_WARN | TAINT_DIE | TAINT_SOFTLOCKUP), \
        f"expected a fresh kernel after {after}"


@contextmanager
def sysctl(path: str, value: str) -> Iterator[None]:
    with open(path) as f:
        saved = f.read().strip()
    with open(path, "w") as f:
        f.write(value)
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(saved)


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    """hmm_faults loaded once per guest boot (each boot starts with a fresh kernel)."""
    load()
    with Faults() as device:
        yield device


def test_mirror_works_before_any_fault(variant, faults):
    assert_mirror_opens(variant)
    assert not tainted() & (TAINT_WARN | TAINT_DIE | TAINT_SOFTLOCKUP)


def test_warn(faults):
    """The kernel warns, the ioctl returns 0: the test's own checks pass."""
    assert faults.ioctl("WARN") == 0


def test_mirror_works_after_warn(variant, faults):
    assert_mirror_opens(variant)
    assert tainted() & TAINT_WARN, "expected the kernel that warned"


def test_soft_lockup(faults):
    """Spin with preemption off for SPIN_SECONDS; with watchdog_thresh=1 the soft lockup
    detector reports after 2 s. The test's own checks pass."""
    with sysctl("/proc/sys/kernel/watchdog_thresh", "1"):
        assert faults.ioctl("SPIN", SPIN_SECONDS) == 0


def test_mirror_works_after_soft_lockup(variant, faults):
    assert_mirror_opens(variant)
    assert tainted() & TAINT_SOFTLOCKUP, "expected the kernel that locked up"


def test_oops(faults):
    """A NULL dereference in hmm_faults_oops(): the guest panics (oops=panic)."""
    faults.ioctl("OOPS")
    pytest.fail("the kernel survived a NULL pointer dereference")


def test_mirror_works_after_oops(variant, faults):
    assert_mirror_opens(variant)
    assert_fresh_kernel(after="the Oops")


@pytest.mark.timeout(HANG_TIMEOUT)
def test_hang(faults):
    """Sleeps in TASK_UNINTERRUPTIBLE: pytest-timeout's signal never gets through, so the
    host's watchdog dumps the tasks and kills the guest."""
    faults.ioctl("SLEEP")
    pytest.fail("the uninterruptible sleep ended")


def test_mirror_works_after_hang(variant, faults):
    assert_mirror_opens(variant)
    assert_fresh_kernel(after="the hang")
