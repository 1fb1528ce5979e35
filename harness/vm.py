"""Acts on QEMU: probes whether KVM really works, boots the guest, follows its event channel."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import console, qemu
from harness.commands import CommandRunner, format_command

KVM_PROBE_SECONDS = 30.0
# How often the host looks for new events: also how late it may see the first result.
EVENT_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class AccelChoice:
    accel: str
    reason: str


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(qemu_binary: str, kernel_image: Path, runner: CommandRunner) -> tuple[bool, str]:
    """Boot the kernel under KVM with no root: a working KVM reaches the kernel's panic over
    the missing root and reboots, which -no-reboot turns into a clean exit."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    argv = [qemu_binary, "-accel", "kvm", "-cpu", "host", "-m", "256M", "-smp", "1",
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", str(kernel_image), "-append", "console=ttyS0 panic=-1 quiet"]
    runner.announce(format_command(argv) + "   # KVM probe")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        output, _ = proc.communicate(timeout=KVM_PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        text = output.decode(errors="replace")
        if "KVM internal error" in text:
            return False, "KVM started but the guest died: KVM internal error"
        return False, f"a KVM guest did not finish booting within {KVM_PROBE_SECONDS:.0f} s"
    text = output.decode(errors="replace")
    if proc.returncode == 0 and "Kernel panic" in text:
        return True, "a KVM guest booted"
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
    return False, f"a KVM guest failed (exit {proc.returncode}): {last.strip()}"


def choose_accel(requested: str, qemu_binary: str, kernel_image: Path, cache_dir: Path,
                 runner: CommandRunner) -> AccelChoice:
    if requested == "tcg":
        return AccelChoice("tcg", "TCG requested with --accel tcg")
    record = cache_dir / "kvm-probe.json"
    key = {"boot_id": _boot_id(), "qemu": qemu_binary}
    cached: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(record.read_text())
    if cached.get("key") == key:
        usable, reason = bool(cached["usable"]), f"{cached['reason']} (probed earlier this boot)"
    elif runner.dry_run:
        usable, reason = False, "dry run: KVM not probed"
    else:
        usable, reason = probe_kvm(qemu_binary, kernel_image, runner)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"key": key, "usable": usable, "reason": reason}))
    if usable:
        return AccelChoice("kvm", reason)
    if requested == "kvm":
        from harness.errors import HarnessError
        raise HarnessError(f"--accel kvm was requested but KVM is not usable: {reason}",
                           "use --accel auto or --accel tcg")
    return AccelChoice("tcg", f"falling back to TCG: {reason}")


@dataclass
class GuestRun:
    returncode: int | None
    timed_out: bool
    wall_seconds: float
    events: list[dict[str, Any]]
    # The test the host gave up on: the kernel reported it stuck, or it outlived its timeout.
    hung_nodeid: str | None = None
    hung_reason: str = ""
    # Host clock (CLOCK_MONOTONIC): when each event arrived, and QEMU's start and end.
    arrivals: list[float] = field(default_factory=list)
    qemu_started: float = 0.0
    qemu_ended: float = 0.0


# The guest's own pytest-timeout fires first; the host steps in only when the test is stuck
# where a signal cannot reach it (uninterruptible sleep, a livelock in the kernel).
HANG_GRACE_SECONDS = 60.0
# After the kernel itself reports a lockup, a stall or a hung task in the running test, the
# test gets this long to finish before it is declared hung: a spin that ends by itself (the
# detectors report after 2 x watchdog_thresh) stays a kernel-error.
KERNEL_HANG_GRACE_SECONDS = 5.0
# A guest that has not started its init in Python this long after QEMU started is stuck in
# firmware, the kernel's boot or the initramfs (user space comes in 5 to 15 s under TCG). It
# is killed and counts as a guest that died before user space, which is booted once more.
BOOT_STALL_SECONDS = 300.0
# The dumps are complete once the console has been quiet this long (at most TASK_DUMP_SECONDS).
TASK_DUMP_QUIET_SECONDS = 1.5
TASK_DUMP_SECONDS = 8.0
# sysrq-w lists blocked (D state) tasks, sysrq-t every task, sysrq-l the CPUs' backtraces.
TASK_DUMP_KEYS = ("w", "l", "t")


class Watchdog:
    """Tracks the running test's deadline from the events and the console."""

    def __init__(self, default_timeout: float, started: float = 0.0) -> None:
        self.default_timeout = default_timeout
        self.current: str | None = None
        self.deadline = float("inf")
        self.reason = ""
        self.boot_deadline = started + BOOT_STALL_SECONDS

    def observe(self, event: dict[str, Any], now: float) -> None:
        if event.get("event") == "guest-started":
            self.boot_deadline = float("inf")
        if event.get("event") == "test-start":
            self.current = event["nodeid"]
            timeout = float(event.get("timeout") or self.default_timeout)
            self.deadline = now + timeout + HANG_GRACE_SECONDS
            self.reason = f"the test outlived its timeout ({timeout:.0f} s) inside the kernel"
        elif event.get("event") == "test-result":
            self.current, self.deadline, self.reason = None, float("inf"), ""

    def kernel_reported_hang(self, console_test: str | None, report: str, now: float) -> None:
        """A lockup, stall or hung-task report printed inside the running test's markers."""
        if self.current is None or console_test != self.current:
            return
        if now + KERNEL_HANG_GRACE_SECONDS < self.deadline:
            self.deadline = now + KERNEL_HANG_GRACE_SECONDS
            self.reason = (f"the kernel reported '{report}' and the test did not finish within "
                           f"{KERNEL_HANG_GRACE_SECONDS:.0f} s")

    def expired(self, now: float) -> bool:
        return (self.current is not None and now > self.deadline) or now > self.boot_deadline

    def expiry_reason(self) -> str:
        if self.current is not None:
            return self.reason
        return (f"the guest did not reach user space within {BOOT_STALL_SECONDS:.0f} s of "
                "QEMU's start")


def request_task_dump(monitor_socket: Path, console: ConsoleFollower) -> None:
    """Ask the guest kernel for task dumps through QEMU's monitor (sysrq on the keyboard),
    and wait until the console has printed them."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as monitor:
        monitor.settimeout(5)
        monitor.connect(str(monitor_socket))
        for key in TASK_DUMP_KEYS:
            monitor.sendall(f"sendkey alt-sysrq-{key}\n".encode())
            time.sleep(0.3)
    wait_for_task_dumps(console)


def wait_for_task_dumps(console: ConsoleFollower) -> None:
    """Until the kernel log has been quiet for a moment after the sysrq dumps."""
    started = quiet_since = time.monotonic()
    while time.monotonic() - started < TASK_DUMP_SECONDS:
        time.sleep(0.25)
        if console.grew():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > TASK_DUMP_QUIET_SECONDS:
            return


class EventFollower:
    """Reads complete JSON lines appended to the events file as the guest writes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return lines

    def poll(self) -> list[dict[str, Any]]:
        events = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events


class ConsoleFollower(EventFollower):
    """Follows the console file: which test's markers it is inside, and the kernel's own
    reports of a task or CPU that stopped making progress."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.open_test: str | None = None

    def poll_hang_reports(self) -> list[tuple[str | None, str]]:
        reports = []
        for raw in self.lines():
            line = console.strip_timestamp(raw.decode(errors="replace").rstrip())
            if (marker := console.marker(line)) is not None:
                kind, nodeid = marker
                self.open_test = nodeid if kind == "begin" else None
            elif console.is_hang_report(line):
                reports.append((self.open_test, line))
        return reports

    def grew(self) -> bool:
        before = self.offset
        self.poll_hang_reports()
        return self.offset != before


def boot(spec: qemu.VmSpec, runner: CommandRunner, timeout: float, test_timeout: float,
         on_event: Callable[[dict[str, Any]], None]) -> GuestRun:
    for path in (spec.console_log, spec.events_log):
        path.unlink(missing_ok=True)
    # QEMU dies with the harness, so a killed run leaves no guest behind.
    argv = ["setpriv", "--pdeathsig", "KILL", *qemu.build_argv(spec)]
    runner.announce(format_command(argv))
    start = time.monotonic()
    if runner.dry_run:
        return GuestRun(returncode=0, timed_out=False, wall_seconds=0.0, events=[])
    follower = EventFollower(spec.events_log)
    console_follower = ConsoleFollower(spec.console_log)
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    watchdog = Watchdog(test_timeout, started=time.monotonic())
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    timed_out = False
    hung: str | None = None
    reason = ""

    def take_events() -> None:
        arrived = time.monotonic()
        for event in follower.poll():
            events.append(event)
            arrivals.append(arrived)
            watchdog.observe(event, arrived)
            on_event(event)

    try:
        while proc.poll() is None:
            take_events()
            now = time.monotonic()
            for test, report in console_follower.poll_hang_reports():
                watchdog.kernel_reported_hang(test, report, now)
            if watchdog.expired(now):
                hung, reason = watchdog.current, watchdog.expiry_reason()
                on_event({"event": "host-watchdog", "nodeid": hung, "reason": reason})
                request_task_dump(spec.monitor_socket, console_follower)
                break
            if now - start > timeout:
                timed_out = True
                break
            time.sleep(EVENT_POLL_SECONDS)
    finally:
        # Also when the harness itself is interrupted: no guest outlives its run.
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    ended = time.monotonic()
    take_events()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if stderr.strip():
        events.append({"event": "qemu-stderr", "text": stderr.strip()[-4000:]})
    return GuestRun(returncode=proc.returncode, timed_out=timed_out,
                    wall_seconds=ended - start, events=events, hung_nodeid=hung,
                    hung_reason=reason, arrivals=arrivals, qemu_started=start,
                    qemu_ended=ended)
