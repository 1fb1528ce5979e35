"""What the guest tells the host, shared by the guest init and the pytest plugin.

Events are JSON lines on a virtio-serial port; the host never scrapes them from the console.
Test markers go to the kernel log, so the host can tie kernel messages to the test that ran.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from typing import Any, NamedTuple

EVENTS_PORT_NAME = "org.hmm_harness.events"
# Where the guest finds the host's shares (and a host run's pytest finds the project).
GUEST_RESULTS = "/hmm/results"
GUEST_PROJECT = "/hmm/project"
GUEST_BUILD = "/hmm/build"  # test_hmm.ko, the cffi binding, hmm-tests, extra modules
PLAN_FILE = f"{GUEST_RESULTS}/plan.json"
MODULE_PATH = f"{GUEST_BUILD}/test_hmm.ko"
# The suites import the project's packages and the cffi binding built beside test_hmm.
GUEST_PYTHONPATH = f"{GUEST_PROJECT}:{GUEST_BUILD}"
HMM_TESTS = f"{GUEST_BUILD}/hmm-tests"  # the kernel's C selftest
# Every test the suites hold, written by the plugin for the C reference runner.
SUITE_FILE = "/tmp/hmm-harness-suite.json"
MARKER_PREFIX = "hmm-harness:"
# (begin|end, seq, nodeid) of a test's marker in the kernel log.
MARKER_PATTERN = re.compile(rf"{MARKER_PREFIX} (begin|end) (\d+) (\S+)")
# The nodeids of the C selftest's cases run beside the suites: c:FIXTURE.VARIANT.TEST.
C_NODEID_PREFIX = "c:"


# --repeat N: each test runs N times in one boot, as parameter `repeatK` of this fixture.


class Variant(NamedTuple):
    """One memory model: which two /dev/hmm_dmirror devices the suites drive. (Not a
    dataclass: the guest's PID 1 imports this module, and dataclasses costs it inspect.)"""

    name: str
    device_paths: tuple[str, str]
    is_coherent: bool


PRIVATE = Variant("private", ("/dev/hmm_dmirror0", "/dev/hmm_dmirror1"), False)
COHERENT = Variant("coherent", ("/dev/hmm_dmirror2", "/dev/hmm_dmirror3"), True)
VARIANTS_BY_MODE = {"private": (PRIVATE,), "coherent": (COHERENT,), "all": (PRIVATE, COHERENT)}


def expected_devices(mode: str) -> list[str]:
    """The devices test_hmm must create for `mode` (a guest's or a host's run)."""
    return [path for variant in VARIANTS_BY_MODE[mode] for path in variant.device_paths]


REPEAT_FIXTURE = "hmm_repeat"
_REPEAT_PARAM = re.compile(r"-repeat(\d+)(?=\]$)|\[repeat(\d+)\]$")


def repeat_id(number: int) -> str:
    return f"repeat{number}"


def without_repeat(nodeid: str) -> str:
    """The nodeid the test has without --repeat."""
    return _REPEAT_PARAM.sub("", nodeid)


def repeat_number(nodeid: str) -> int:
    match = _REPEAT_PARAM.search(nodeid)
    return int(match.group(1) or match.group(2)) if match else 1


def begin_marker(seq: int, nodeid: str) -> str:
    return f"{MARKER_PREFIX} begin {seq} {nodeid}"


def end_marker(seq: int, nodeid: str) -> str:
    return f"{MARKER_PREFIX} end {seq} {nodeid}"


def find_events_device() -> str | None:
    """The /dev node of the host's events port. The guest has no udev, so no
    /dev/virtio-ports/ symlinks: the port is found by its name in sysfs."""
    ports = "/sys/class/virtio-ports"
    for port in sorted(os.listdir(ports)) if os.path.isdir(ports) else []:
        try:
            with open(f"{ports}/{port}/name") as name:
                if name.read().strip() == EVENTS_PORT_NAME:
                    return f"/dev/{port}"
        except OSError:
            continue
    return None


EVENTS_FD_VARIABLE = "HMM_HARNESS_EVENTS_FD"
# pytest's plugins in the guest: only those the suites use. Under TCG, reading every installed
# package's entry points costs 0.4 s and the debugging plugin's import of pdb 0.8 s.
PYTEST_PLUGIN_OPTIONS = ("--disable-plugin-autoload", "-p", "pytest_timeout",
                         "-p", "no:cacheprovider", "-p", "no:debugging", "-p", "no:unittest")
# Guest uptimes the initramfs took before Python ran: "NAME=SECONDS ...".
BOOT_TIMES_VARIABLE = "HMM_HARNESS_BOOT_TIMES"


def uptime() -> float:
    """Seconds since the guest kernel started, on the clock /proc/uptime shows."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_times(text: str) -> dict[str, float]:
    """The initramfs's timestamps, from BOOT_TIMES_VARIABLE."""
    times = {}
    for item in text.split():
        name, _, seconds = item.partition("=")
        try:
            times[name] = float(seconds)
        except ValueError:
            continue
    return times


class EventChannel:
    """Writes events to the host as JSON lines.

    A virtio-serial port opens only once, so the init opens it and pytest inherits the fd.
    """

    def __init__(self, fd: int, durable: bool = False) -> None:
        self._fd = fd
        self._durable = durable

    @classmethod
    def open(cls, path: str) -> EventChannel:
        """A file of events (the host's own run): each one is on disk before the next test
        runs, so a kernel that takes the machine down leaves the finished tests' results."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return cls(fd, durable=stat.S_ISREG(os.fstat(fd).st_mode))

    @classmethod
    def inherited(cls) -> EventChannel | None:
        fd = os.environ.get(EVENTS_FD_VARIABLE)
        return cls(int(fd)) if fd else None

    def fileno(self) -> int:
        return self._fd

    def send(self, event: str, **fields: Any) -> None:
        # The guest's clock, so the host can tell where a boot's time went (bench --startup).
        stamped = {"event": event, "uptime": round(uptime(), 4), **fields}
        data = memoryview((json.dumps(stamped) + "\n").encode())
        # A virtio-serial port takes at most 32 KiB a write(); a selection of a few hundred
        # tests is longer than that.
        while data:
            data = data[os.write(self._fd, data):]
        if self._durable:
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def write_kmsg(text: str) -> None:
    """A line in the kernel log at KERN_NOTICE, so it reaches the console."""
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, f"<5>{text}\n".encode())
    finally:
        os.close(fd)
