"""/dev/hmm_faults of tests/kmod/hmm_faults, the project's module that makes the kernel fail on
purpose (an Oops, a WARN, an uninterruptible sleep, a soft lockup), for the suites that check
how a kernel failure is reported. A run gets it with --extra-kmod tests/kmod/hmm_faults."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from types import TracebackType

from harness.guest import protocol

MODULE_DIR = f"{protocol.GUEST_BUILD}/extra/hmm_faults"
DEVICE = "/dev/hmm_faults"


def ioctl_numbers(header: str) -> dict[str, int]:
    """HMM_FAULTS_* of hmm_faults.h. They are all _IO(type, nr): no direction and no size,
    so by include/uapi/asm-generic/ioctl.h the number is type << 8 | nr."""
    numbers = {name: ord(kind) << 8 | int(nr, 0) for name, kind, nr in re.findall(
        r"#define\s+(HMM_FAULTS_\w+)\s+_IO\('(.)',\s*(\w+)\)", header)}
    assert numbers, "hmm_faults.h defines no _IO ioctl"
    return numbers


def load() -> None:
    """insmod hmm_faults, unless this kernel has it already."""
    if os.path.exists("/sys/module/hmm_faults"):
        return
    done = subprocess.run(["insmod", f"{MODULE_DIR}/hmm_faults.ko"], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"insmod hmm_faults.ko: {done.stderr.strip()}"


class Faults:
    """The open device; ioctl("SLEEP") and the others by their names in hmm_faults.h."""

    def __init__(self) -> None:
        with open(f"{MODULE_DIR}/hmm_faults.h") as header:
            self.numbers = ioctl_numbers(header.read())
        self.fd = os.open(DEVICE, os.O_RDWR)

    def ioctl(self, name: str, arg: int = 0) -> int:
        return fcntl.ioctl(self.fd, self.numbers[f"HMM_FAULTS_{name}"], arg)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Faults:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
