"""Run by hang_on_host_in_guest.py with --target host: the kernel hangs in the second test, in
hmm_faults' uninterruptible sleep, which neither pytest-timeout's signal nor SIGKILL ends."""

from __future__ import annotations

from harness.guest import faults, hmm


def test_before_the_hang(dmirror: hmm.MirrorDevice) -> None:
    with hmm.HmmBuffer.anonymous(hmm.PAGE_SIZE) as buffer:
        buffer.fill(hmm.int_sequence(hmm.PAGE_SIZE // hmm.INT_SIZE))
        assert dmirror.read(buffer.addr, 1, buffer.mirror_ptr).cpages == 1


def test_the_kernel_hangs() -> None:
    with faults.Faults() as device:
        device.ioctl("SLEEP")


def test_after_the_hang() -> None:
    raise AssertionError("the run was to stop at the hang")
