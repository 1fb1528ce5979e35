"""Pure: where a boot's time went, from the host's clock and the guest's.

The guest stamps every event with its uptime (CLOCK_BOOTTIME, zero when the kernel starts);
the host notes when QEMU started and when each event arrived (CLOCK_MONOTONIC). The two
clocks are tied by the event that arrived soonest after the guest sent it: arrival minus
uptime is the host time of the guest kernel's zero, late by at most one poll of the events
file. Every guest moment then has a host time, and the phases of a start-up line up in one
table with the host's own work before QEMU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Moments of a first boot, in the order they happen, and the phase each one ends.
GUEST_MOMENTS = (
    ("initramfs", "kernel boot to the initramfs"),
    ("switch_root", "initramfs: modules and 9p mounts"),
    ("guest-started", "switch_root and Python start"),
    ("pytest-started", "pytest import and plugin load"),
    ("module-loaded", "test_hmm load and device wait"),
    ("collected", "collection"),
    ("first-result", "the first test"),
)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    # When the phase ended: seconds since the command started, and guest uptime.
    host_end: float
    guest_end: float | None


def timeline(events: Sequence[dict[str, Any]], arrivals: Sequence[float],
             qemu_started: float, qemu_ended: float) -> dict[str, Any]:
    """The moments of one boot (host clock: CLOCK_MONOTONIC seconds), for results.json."""
    stamped = [(event, arrived) for event, arrived in zip(events, arrivals, strict=True)
               if isinstance(event.get("uptime"), int | float)]
    guest: dict[str, float] = {}
    for event, _ in stamped:
        kind = event["event"]
        if kind == "guest-started":
            guest.update({name: float(seconds)
                          for name, seconds in event.get("boot_times", {}).items()})
        if kind == "test-result" and "first-result" not in guest:
            guest["first-result"] = float(event["uptime"])
        if kind in ("guest-started", "pytest-started", "module-loaded") or (
                kind == "collected" and event.get("source") != "c-selftest"):
            guest.setdefault(kind, float(event["uptime"]))
    offset = min((arrived - float(event["uptime"]) for event, arrived in stamped), default=None)
    return {"qemu_started": qemu_started, "qemu_ended": qemu_ended,
            "guest_zero": offset, "guest": guest}


def phases(line: dict[str, Any], command_started: float, command_ended: float) -> list[Phase]:
    """The start-up of one boot as phases, the host's work before QEMU first; a moment the
    boot never reached ends the list."""
    qemu_started = float(line["qemu_started"]) - command_started
    result = [Phase("host work before QEMU", qemu_started, qemu_started, None)]
    if line.get("guest_zero") is None:
        return result
    zero = float(line["guest_zero"]) - command_started
    result.append(Phase("QEMU and firmware to the kernel's start", zero - qemu_started, zero,
                        0.0))
    last_host, last_guest = zero, 0.0
    for moment, name in GUEST_MOMENTS:
        if moment not in line["guest"]:
            break
        guest = float(line["guest"][moment])
        result.append(Phase(name, guest - last_guest, zero + guest, guest))
        last_host, last_guest = zero + guest, guest
    ended = command_ended - command_started
    result.append(Phase("the rest: later tests, power-off, reports", ended - last_host, ended,
                        None))
    return result


def first_result(line: dict[str, Any], command_started: float) -> float | None:
    """Seconds from the command's start to the first test result."""
    moment = line.get("guest", {}).get("first-result")
    if moment is None or line.get("guest_zero") is None:
        return None
    return float(line["guest_zero"]) + float(moment) - command_started


def table(rows: list[Phase]) -> str:
    lines = [f"{'phase':42} {'seconds':>8} {'host end':>9} {'guest end':>10}"]
    for row in rows:
        guest = f"{row.guest_end:10.2f}" if row.guest_end is not None else f"{'':>10}"
        lines.append(f"{row.name:42} {row.seconds:8.2f} {row.host_end:9.2f} {guest}")
    return "\n".join(lines)
