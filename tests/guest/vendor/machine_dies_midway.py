"""Run by resume_on_host_in_guest.py with --target host: the machine dies in the second test."""

from __future__ import annotations

from harness.guest import hmm


def test_before_the_crash(dmirror: hmm.MirrorDevice) -> None:
    with hmm.HmmBuffer.anonymous(hmm.PAGE_SIZE) as buffer:
        buffer.fill(hmm.int_sequence(hmm.PAGE_SIZE // hmm.INT_SIZE))
        assert dmirror.read(buffer.addr, 1, buffer.mirror_ptr).cpages == 1


def test_the_machine_dies(dmirror: hmm.MirrorDevice) -> None:
    with open("/proc/sysrq-trigger", "w") as sysrq:
        sysrq.write("c")


def test_after_the_crash(dmirror: hmm.MirrorDevice) -> None:
    test_before_the_crash(dmirror)
