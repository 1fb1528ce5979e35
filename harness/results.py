"""Pure: merge guest events and the console log into per-test outcomes, results.json, JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import console

# Outcomes, worst first. kernel-error: the test's own checks may have passed, but the kernel
# reported an error (WARN, Oops, lockup, ...) while it ran. crashed: the guest died during it.
# not-run: collected, but the guest was gone before its turn.
OUTCOMES = ("crashed", "hung", "kernel-error", "error", "failed", "not-run", "skipped", "passed")
PASSING = frozenset({"passed", "skipped"})


@dataclass
class TestOutcome:
    __test__ = False  # not a test class, whatever pytest's name rule says
    nodeid: str
    outcome: str
    duration: float = 0.0
    message: str = ""
    kernel_errors: list[str] = field(default_factory=list)
    kernel_log: list[str] = field(default_factory=list)
    # The distinct stack frames of kernel_log with file:line (harness.debuginfo).
    decoded: list[str] = field(default_factory=list)
    # Why this case is known to go wrong (its `known_issue` marker), shown when it does.
    known_issue: str = ""


@dataclass
class RunReport:
    tests: list[TestOutcome]
    kernel: dict[str, str]
    kconfig: dict[str, str]
    accelerator: str
    mode: str
    session_kernel_errors: list[str] = field(default_factory=list)
    session_kernel_log: list[str] = field(default_factory=list)
    guest_status: int | None = None
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    # How the stack frames were decoded: per object (vmlinux, test_hmm, ...), which file gave
    # its symbols, or why its frames stay undecoded.
    symbols: dict[str, str] = field(default_factory=dict)
    # With --reference: the kernel's C selftest run in the same guests, and the comparison.
    c_selftest: list[TestOutcome] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    benchmark: dict[str, Any] = field(default_factory=dict)
    reference: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for test in self.tests:
            counts[test.outcome] += 1
        return counts

    def passed(self) -> bool:
        return (all(t.outcome in PASSING for t in self.tests) and not self.session_kernel_errors
                and not self.problems)


def parse_events(text: str) -> list[dict[str, Any]]:
    """Events in order; a last line cut short by a dying guest is dropped."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def merge(events: list[dict[str, Any]], log: console.ConsoleLog,
          hung_nodeid: str | None = None) -> list[TestOutcome]:
    """One outcome per collected test of one guest boot, in collection order."""
    order: list[str] = []
    results: dict[str, TestOutcome] = {}
    started: set[str] = set()
    known: dict[str, str] = {}
    for event in events:
        kind = event["event"]
        if kind == "collected":
            order += [nodeid for nodeid in event["nodeids"] if nodeid not in order]
        elif kind == "test-start":
            started.add(event["nodeid"])
            if event.get("known_issue"):
                known[event["nodeid"]] = event["known_issue"]
        elif kind == "test-result":
            results[event["nodeid"]] = TestOutcome(
                nodeid=event["nodeid"], outcome=event["outcome"],
                duration=float(event.get("duration", 0.0)), message=event.get("message", ""),
                known_issue=event.get("known_issue", ""))
    order += [nodeid for nodeid in [*started, *results] if nodeid not in order]
    outcomes = []
    for nodeid in order:
        outcome = results.get(nodeid)
        if outcome is None and nodeid == hung_nodeid:
            outcome = TestOutcome(nodeid=nodeid, outcome="hung", message=(
                "the test outlived its timeout inside the kernel; the host dumped the guest's "
                "tasks (sysrq w, l, t: see kernel_log) and killed the guest"))
        elif outcome is None:
            crashed = nodeid in started
            outcome = TestOutcome(nodeid=nodeid, outcome="crashed" if crashed else "not-run",
                                  message="the guest died while this test ran" if crashed
                                  else "the guest was gone before this test could run")
        outcome.known_issue = outcome.known_issue or known.get(nodeid, "")
        test_log = log.tests.get(nodeid)
        if test_log is not None:
            outcome.kernel_errors = console.distinct(console.kernel_errors(test_log.lines))
            # A crash or hang keeps the whole console tail: panic, sysrq task dumps.
            limit = 3000 if outcome.outcome in ("crashed", "hung") else 200
            outcome.kernel_log = console.excerpt(test_log.lines, limit)
            if outcome.kernel_errors and outcome.outcome in {"passed", "failed", "skipped",
                                                             "error"}:
                outcome.message = (f"kernel error while the test ran ({outcome.outcome} "
                                   f"by its own checks): {outcome.kernel_errors[0]}\n"
                                   + outcome.message)
                outcome.outcome = "kernel-error"
        outcomes.append(outcome)
    return outcomes


def combine(order: list[str], rounds: list[list[TestOutcome]]) -> list[TestOutcome]:
    """Outcomes over several boots: each test's first outcome other than not-run."""
    final: dict[str, TestOutcome] = {}
    for outcomes in rounds:
        for outcome in outcomes:
            if outcome.outcome != "not-run":
                final.setdefault(outcome.nodeid, outcome)
    never = "the guest was gone before this test could run"
    return [final.get(nodeid) or TestOutcome(nodeid, "not-run", message=never)
            for nodeid in order]


def still_to_run(order: list[str], rounds: list[list[TestOutcome]]) -> list[str]:
    return [t.nodeid for t in combine(order, rounds) if t.outcome == "not-run"]


def exit_status(report: RunReport) -> int:
    return 0 if report.passed() else 1


def to_json(report: RunReport) -> dict[str, Any]:
    data = asdict(report)
    data["counts"] = report.counts()
    data["passed"] = report.passed()
    return data


def to_junit(report: RunReport) -> str:
    counts = report.counts()
    failures = counts["failed"]
    errors = sum(counts[o] for o in ("crashed", "hung", "kernel-error", "error", "not-run"))
    suite = ET.Element("testsuite", name="hmm-harness", tests=str(len(report.tests)),
                       failures=str(failures), errors=str(errors),
                       skipped=str(counts["skipped"]),
                       time=f"{sum(t.duration for t in report.tests):.3f}")
    properties = ET.SubElement(suite, "properties")
    for name, value in [("kernel", report.kernel.get("release", "")),
                        ("accelerator", report.accelerator), ("mode", report.mode)]:
        ET.SubElement(properties, "property", name=name, value=value)
    for test in report.tests:
        path, _, name = test.nodeid.rpartition("::")
        case = ET.SubElement(suite, "testcase", name=name or test.nodeid,
                             classname=path.removesuffix(".py").replace("/", ".").replace(
                                 "::", "."), time=f"{test.duration:.3f}")
        if test.outcome == "failed":
            ET.SubElement(case, "failure", message=_first_line(test.message)).text = test.message
        elif test.outcome == "skipped":
            ET.SubElement(case, "skipped", message=_first_line(test.message))
        elif test.outcome != "passed":
            ET.SubElement(case, "error", type=test.outcome,
                          message=_first_line(test.message)).text = test.message
        if test.known_issue and test.outcome not in PASSING:
            ET.SubElement(ET.SubElement(case, "properties"), "property", name="known_issue",
                          value=test.known_issue)
        if test.kernel_log:
            decoded = ["", "decoded frames:", *test.decoded] if test.decoded else []
            ET.SubElement(case, "system-out").text = "\n".join([*test.kernel_log, *decoded])
    if report.session_kernel_log:
        ET.SubElement(suite, "system-out").text = "\n".join(report.session_kernel_log[-300:])
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
