"""Pure: split a guest console log into what each test made the kernel print."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.guest import protocol

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_MARKER = protocol.MARKER_PATTERN
# First lines of kernel reports that mean the kernel itself went wrong.
KERNEL_ERROR_PATTERNS = tuple(re.compile(p) for p in (
    r"^WARNING: ",
    r"^BUG: ",
    r"^Oops: ",
    r"^kernel BUG at ",
    r"^general protection fault",
    r"^Kernel panic - not syncing",
    r"^BUG: KASAN: ",
    r"^BUG: KFENCE: ",
    r"^UBSAN: ",
    r"^INFO: task .+ blocked for more than \d+ seconds",
    r"^watchdog: BUG: soft lockup",
    r"^Watchdog detected hard LOCKUP",
    r"^rcu: INFO: .*detected stalls?\b",
    r"^list_(add|del) corruption",
))


# Reports of a CPU or task that stopped making progress: the host does not wait for the
# test's timeout once one of these is printed inside it.
HANG_REPORT_PATTERNS = tuple(re.compile(p) for p in (
    r"^INFO: task .+ blocked for more than \d+ seconds",
    r"^watchdog: BUG: soft lockup",
    r"^Watchdog detected hard LOCKUP",
    r"^rcu: INFO: .*detected stalls?\b",
))


def is_hang_report(line: str) -> bool:
    return any(p.search(line) for p in HANG_REPORT_PATTERNS)


def marker(line: str) -> tuple[str, str] | None:
    """('begin' or 'end', nodeid) for a test marker line."""
    match = _MARKER.search(line)
    return (match.group(1), match.group(3)) if match else None


@dataclass
class TestLog:
    seq: int
    nodeid: str
    lines: list[str] = field(default_factory=list)
    ended: bool = False


@dataclass
class ConsoleLog:
    """Console lines outside any test, and each test's lines between its markers."""

    session_lines: list[str] = field(default_factory=list)
    tests: dict[str, TestLog] = field(default_factory=dict)
    # The test whose end marker never came: the guest died or hung inside it.
    open_test: str | None = None


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line)


def parse(text: str) -> ConsoleLog:
    log = ConsoleLog()
    current: TestLog | None = None
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = strip_timestamp(raw.rstrip())
        if not line:
            continue
        marker = _MARKER.search(line)
        if marker and marker.group(1) == "begin":
            current = TestLog(seq=int(marker.group(2)), nodeid=marker.group(3))
            log.tests[current.nodeid] = current
            continue
        if marker and current is not None and marker.group(3) == current.nodeid:
            current.ended = True
            current = None
            continue
        (current.lines if current else log.session_lines).append(line)
    log.open_test = current.nodeid if current else None
    return log


def kernel_errors(lines: list[str]) -> list[str]:
    """The first line of every kernel error report among `lines`."""
    return [line for line in lines if any(p.search(line) for p in KERNEL_ERROR_PATTERNS)]


def distinct(reports: list[str], limit: int = 20) -> list[str]:
    """Each different report once, in order: one WARN can repeat a thousand times."""
    return list(dict.fromkeys(reports))[:limit]


def excerpt(lines: list[str], limit: int = 200) -> list[str]:
    """At most `limit` lines, keeping the start of the first kernel error if there is one."""
    if len(lines) <= limit:
        return list(lines)
    errors = [i for i, line in enumerate(lines) if any(p.search(line) for p in
                                                       KERNEL_ERROR_PATTERNS)]
    start = max(0, errors[0] - 5) if errors else len(lines) - limit
    start = min(start, len(lines) - limit)
    return lines[start:start + limit]
