"""Live progress and the final summary, printed for a person at a terminal or a CI log."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from harness.results import ACCEPTED, OUTCOMES, RunReport


class Progress:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.total = 0
        self.done = 0
        self.running: str | None = None
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=self.stream, flush=True)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "guest-started":
            self.say(f"guest up: kernel {event.get('release')}")
        elif kind == "module-loaded":
            self.say(f"test_hmm loaded {' '.join(event.get('params', []))}; devices: "
                     f"{' '.join(event.get('devices', []))}")
        elif kind == "setup-error":
            self.say(f"guest setup failed: {event.get('message')}")
        elif kind == "collected":
            count = len(event.get("nodeids", []))
            if event.get("source") == "c-selftest":
                self.total += count
                self.say(f"{count} cases of the kernel's C selftest selected")
            elif self.total:
                self.say(f"{count} tests left to run in this guest")
            else:
                self.total = count
                self.say(f"{self.total} tests selected")
        elif kind == "test-start":
            if self.running:
                self.done += 1  # the guest died or hung in the previous test
            self.running = event["nodeid"]
            self.say(f"[{self.done + 1}/{self.total}] {event['nodeid']} ...")
        elif kind == "host-watchdog":
            self.say(f"{event.get('nodeid') or 'the guest'}: "
                     f"{event.get('reason') or 'outlived its timeout'}: "
                     "dumping the guest's tasks, then killing the guest")
        elif kind == "test-result":
            self.running = None
            self.done += 1
            self.say(f"[{self.done}/{self.total}] {event['outcome'].upper():8} {event['nodeid']}"
                     f" ({event.get('duration', 0.0):.1f}s)")


def summary(report: RunReport) -> str:
    lines = []
    kernel_problems = [t for t in report.tests if t.kernel_errors and t.outcome != "known-failure"]
    if report.session_kernel_errors or kernel_problems:
        lines.append("KERNEL ERRORS")
        lines += [f"  (outside any test) {e}" for e in report.session_kernel_errors]
        lines += [f"  {t.nodeid}: {t.kernel_errors[0]}" for t in kernel_problems]
    if fixed := report.fixed_known_issues():
        strict = " (fails the run: --strict-known-issues)" if report.strict_known_issues else ""
        lines.append(f"FIXED? known issues that passed{strict}: update known-issues.toml")
        lines += [f"  {t.nodeid}  ({t.known_issue_id})" for t in fixed]
    if quiet := [t for t in report.tests if t.known_issue_state == "not reproduced"]:
        lines.append("INTERMITTENT known issues not reproduced this time (a pass proves "
                     "nothing for a race)")
        lines += [f"  {t.nodeid}  ({t.known_issue_id})" for t in quiet]
    bad = [t for t in report.tests if t.outcome not in ACCEPTED]
    if bad:
        lines.append("NOT PASSED")
        for test in bad:
            lines.append(f"  {test.outcome:12} {test.nodeid}  {_last_line(test.message)}")
            if test.known_issue_state == "unexpected":
                lines.append(f"               not as known issue {test.known_issue_id} expects: "
                             f"{test.known_issue[:200]}")
    if known := [t for t in report.tests if t.outcome == "known-failure"]:
        lines.append("KNOWN FAILURES (do not fail the run)")
        lines += [f"  {t.actual_outcome:12} {t.nodeid}  ({t.known_issue_id})" for t in known]
    if report.flaky:
        lines.append(f"FLAKY over {max(map(len, report.repeats.values()))} repetitions")
        for base in report.flaky:
            outcomes = report.repeats[base]
            passed = sum(o in ("passed", "skipped") for o in outcomes)
            lines.append(f"  {base}: {passed}/{len(outcomes)} passed ({', '.join(outcomes)})")
    elif report.repeats:
        lines.append(f"no flaky test over {max(map(len, report.repeats.values()))} repetitions")
    if report.baseline:
        regressions = report.regressions()
        lines.append(f"REGRESSIONS against {report.baseline}: {len(regressions)}")
        lines += [f"  {c['nodeid']}: {c['before'] or 'absent'} -> {c['after']}"
                  for c in regressions]
    lines += [f"PROBLEM: {p}" for p in report.problems]
    if report.interrupted:
        lines.append(f"INTERRUPTED by {report.interrupted}")
    counts = report.counts()
    tally = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    lines.append(f"kernel {report.kernel.get('release', '?')} ({report.accelerator}), "
                 f"mode {report.mode}: {tally or 'no tests'} in {report.wall_seconds:.0f}s")
    return "\n".join(lines)


def _last_line(message: str) -> str:
    return message.strip().splitlines()[-1][:160] if message.strip() else ""
