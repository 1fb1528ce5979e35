"""Acts on QEMU: probes whether KVM really works, boots the guest, follows its event channel."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import qemu
from harness.commands import CommandRunner, format_command

KVM_PROBE_SECONDS = 30.0


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


class EventFollower:
    """Reads complete JSON lines appended to the events file as the guest writes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events


def boot(spec: qemu.VmSpec, runner: CommandRunner, timeout: float,
         on_event: Callable[[dict[str, Any]], None]) -> GuestRun:
    for path in (spec.console_log, spec.events_log):
        path.unlink(missing_ok=True)
    # QEMU dies with the harness, so an interrupted run leaves no guest behind.
    argv = ["setpriv", "--pdeathsig", "KILL", *qemu.build_argv(spec)]
    runner.announce(format_command(argv))
    start = time.monotonic()
    if runner.dry_run:
        return GuestRun(returncode=0, timed_out=False, wall_seconds=0.0, events=[])
    follower = EventFollower(spec.events_log)
    events: list[dict[str, Any]] = []
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    timed_out = False
    while proc.poll() is None:
        for event in follower.poll():
            events.append(event)
            on_event(event)
        if time.monotonic() - start > timeout:
            timed_out = True
            proc.kill()
            break
        time.sleep(0.2)
    proc.wait()
    for event in follower.poll():
        events.append(event)
        on_event(event)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if stderr.strip():
        events.append({"event": "qemu-stderr", "text": stderr.strip()[-4000:]})
    return GuestRun(returncode=proc.returncode, timed_out=timed_out,
                    wall_seconds=time.monotonic() - start, events=events)
