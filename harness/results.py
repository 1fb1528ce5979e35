"""Pure: merge guest events and the console log into per-test outcomes, results.json, JUnit."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness import console
from harness.guest import protocol

# Outcomes, worst first. kernel-error: the test's own checks may have passed, but the kernel
# reported an error (WARN, Oops, lockup, ...) while it ran. crashed: the guest died during it.
# interrupted: the harness was stopped (SIGINT, SIGTERM) while it ran. not-run: collected, but
# the guest was gone before its turn. known-failure: it went wrong exactly as an entry of the
# known issues says (its observed outcome is kept in actual_outcome).
OUTCOMES = ("crashed", "hung", "kernel-error", "error", "failed", "interrupted", "not-run",
            "known-failure", "skipped", "passed")
PASSING = frozenset({"passed", "skipped"})
# Outcomes that do not fail a run.
ACCEPTED = PASSING | {"known-failure"}
# Outcomes a later boot or a --resume still has to give the test.
UNFINISHED = frozenset({"not-run", "interrupted"})


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
    # The test's own verdict when the kernel's error made it a kernel-error.
    own_outcome: str = ""
    # A known issue (harness.knownissues) that names this test: its id, its diagnosis, and
    # whether the outcome was the known one (known-failure), a pass (fixed?, or not
    # reproduced for an intermittent issue) or another
    # failure (unexpected). actual_outcome is what happened when outcome is known-failure.
    known_issue_id: str = ""
    known_issue: str = ""
    known_issue_state: str = ""
    actual_outcome: str = ""


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
    # --strict-known-issues: a known issue that passed (fixed?) fails the run.
    strict_known_issues: bool = False
    # --baseline: the run compared with, and each test's change (harness.compare).
    baseline: str = ""
    baseline_changes: list[dict[str, Any]] = field(default_factory=list)
    # --repeat: per test without its repeat parameter, the outcome of each repetition.
    repeats: dict[str, list[str]] = field(default_factory=dict)
    flaky: list[str] = field(default_factory=list)
    # --shard: which part of the selection this run is ("K/N"), and the whole selection
    # (every nodeid of all N parts) it was cut from, which a merge checks.
    shard: dict[str, Any] = field(default_factory=dict)
    # When the run started (ISO 8601, UTC), and the KCIDB origin its results.kcidb.json uses.
    started_at: str = ""
    kcidb_origin: str = ""
    # `merge`: the results directories this report was made from.
    merged_from: list[str] = field(default_factory=list)
    # The signal that stopped the harness (SIGINT, SIGTERM), if one did.
    interrupted: str = ""
    # The first boot's moments on the host's and the guest's clock (harness.startup).
    startup: dict[str, Any] = field(default_factory=dict)
    # Guest boots so far, including those of the runs a --resume continued.
    boots: int = 0
    # The stateful suite's seed and sequences per machine: --seed SEED repeats the run.
    exploration: dict[str, int] = field(default_factory=dict)
    # --target host: what the machine's checks found and chose (harness.hostcheck).
    host: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for test in self.tests:
            counts[test.outcome] += 1
        return counts

    def fixed_known_issues(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.known_issue_state == "fixed?"]

    def regressions(self) -> list[dict[str, Any]]:
        """With --baseline: tests worse than there (a new test that goes wrong as a known
        issue says is not counted)."""
        known = {t.nodeid for t in self.tests if t.outcome == "known-failure"}
        return [c for c in self.baseline_changes
                if c["change"] == "regression"
                or (c["change"] == "new, not passing" and c["nodeid"] not in known)]

    def passed(self) -> bool:
        if self.interrupted or self.session_kernel_errors or self.problems:
            return False
        if self.strict_known_issues and self.fixed_known_issues():
            return False
        if self.baseline:
            return not self.regressions()
        return all(t.outcome in ACCEPTED for t in self.tests)


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


GUEST_HANG_ACTION = ("the host dumped the guest's tasks (sysrq w, l, t: see kernel_log) and "
                     "killed the guest")


def merge(events: list[dict[str, Any]], log: console.ConsoleLog,
          hung_nodeid: str | None = None, hung_reason: str = "",
          in_progress: str = "crashed", hung_action: str = GUEST_HANG_ACTION,
          ) -> list[TestOutcome]:
    """One outcome per collected test of one guest boot, in collection order. The test that
    started but never ended gets `in_progress`: crashed when the guest died, interrupted when
    the harness was stopped, not-run for a snapshot of a boot still running."""
    order: list[str] = []
    results: dict[str, TestOutcome] = {}
    started: set[str] = set()
    for event in events:
        kind = event["event"]
        if kind == "collected":
            order += [nodeid for nodeid in event["nodeids"] if nodeid not in order]
        elif kind == "test-start":
            started.add(event["nodeid"])
        elif kind == "test-result":
            results[event["nodeid"]] = TestOutcome(
                nodeid=event["nodeid"], outcome=event["outcome"],
                duration=float(event.get("duration", 0.0)), message=event.get("message", ""))
    order += [nodeid for nodeid in [*started, *results] if nodeid not in order]
    outcomes = []
    for nodeid in order:
        outcome = results.get(nodeid)
        if outcome is None and nodeid == hung_nodeid:
            outcome = TestOutcome(nodeid=nodeid, outcome="hung", message=(
                f"{hung_reason or 'the test outlived its timeout inside the kernel'}; "
                f"{hung_action}"))
        elif outcome is None and nodeid in started:
            outcome = TestOutcome(nodeid=nodeid, outcome=in_progress,
                                  message=IN_PROGRESS_MESSAGES[in_progress])
        elif outcome is None:
            outcome = TestOutcome(nodeid=nodeid, outcome="not-run",
                                  message="the guest was gone before this test could run")
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
                outcome.own_outcome = outcome.outcome
                outcome.outcome = "kernel-error"
        outcomes.append(outcome)
    return outcomes


IN_PROGRESS_MESSAGES = {
    "crashed": "the guest died while this test ran",
    "interrupted": "the harness was stopped while this test ran",
    "not-run": "still running when these results were written",
}


def combine(order: list[str], rounds: list[list[TestOutcome]]) -> list[TestOutcome]:
    """Outcomes over several boots: each test's first outcome that is not unfinished, else
    its last unfinished one."""
    final: dict[str, TestOutcome] = {}
    for outcomes in rounds:
        for outcome in outcomes:
            earlier = final.get(outcome.nodeid)
            if earlier is None or earlier.outcome in UNFINISHED:
                final[outcome.nodeid] = outcome
    never = "the guest was gone before this test could run"
    return [final.get(nodeid) or TestOutcome(nodeid, "not-run", message=never)
            for nodeid in order]


def still_to_run(order: list[str], rounds: list[list[TestOutcome]]) -> list[str]:
    return [t.nodeid for t in combine(order, rounds) if t.outcome in UNFINISHED]


def repetitions(tests: list[TestOutcome]) -> tuple[dict[str, list[str]], list[str]]:
    """With --repeat: each test's outcomes in repetition order, and the flaky tests (some
    repetitions passed, some did not; known failures count as not passing)."""
    runs: dict[str, list[tuple[int, str]]] = {}
    for test in tests:
        if test.outcome in UNFINISHED:
            continue
        base = protocol.without_repeat(test.nodeid)
        runs.setdefault(base, []).append((protocol.repeat_number(test.nodeid), test.outcome))
    repeats = {base: [o for _, o in sorted(seen)] for base, seen in runs.items()}
    flaky = [base for base, outcomes in repeats.items()
             if any(o in PASSING for o in outcomes) and any(o not in PASSING for o in outcomes)]
    return repeats, flaky


def exit_status(report: RunReport) -> int:
    return 0 if report.passed() else 1


def to_json(report: RunReport) -> dict[str, Any]:
    data = asdict(report)
    data["counts"] = report.counts()
    data["passed"] = report.passed()
    data["fixed_known_issues"] = [t.nodeid for t in report.fixed_known_issues()]
    data["regressions"] = [c["nodeid"] for c in report.regressions()]
    return data


_OWN_VERDICT = re.compile(r"kernel error while the test ran \((\w+) by its own checks\)")


def from_json(data: dict[str, Any]) -> RunReport:
    """The report to_json() wrote (what it derives, such as counts, is dropped)."""
    outcome_fields = {f.name for f in fields(TestOutcome)}
    report_fields = {f.name for f in fields(RunReport)}

    def outcomes(items: list[dict[str, Any]]) -> list[TestOutcome]:
        tests = [TestOutcome(**{k: v for k, v in item.items() if k in outcome_fields})
                 for item in items]
        for test in tests:
            # Results written before own_outcome was recorded still say it in the message.
            if test.outcome == "kernel-error" and not test.own_outcome and \
                    (own := _OWN_VERDICT.match(test.message)):
                test.own_outcome = own.group(1)
        return tests

    values = {k: v for k, v in data.items() if k in report_fields}
    values["tests"] = outcomes(data.get("tests", []))
    values["c_selftest"] = outcomes(data.get("c_selftest", []))
    return RunReport(**values)


def to_junit(report: RunReport) -> str:
    counts = report.counts()
    failures = counts["failed"]
    errors = sum(counts[o] for o in ("crashed", "hung", "kernel-error", "error", "interrupted",
                                     "not-run"))
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
        elif test.outcome == "known-failure":
            # Not a failure of this run: CI systems show skipped cases without failing.
            ET.SubElement(case, "skipped", type="known-failure", message=(
                f"known issue {test.known_issue_id} ({test.actual_outcome}): "
                f"{_first_line(test.message)}")).text = test.message
        elif test.outcome != "passed":
            ET.SubElement(case, "error", type=test.outcome,
                          message=_first_line(test.message)).text = test.message
        if test.known_issue_state:
            properties = ET.SubElement(case, "properties")
            for name, value in (("known_issue", test.known_issue_id),
                                ("known_issue_state", test.known_issue_state),
                                ("diagnosis", test.known_issue),
                                ("actual_outcome", test.actual_outcome or test.outcome)):
                ET.SubElement(properties, "property", name=name, value=value)
        if test.kernel_log:
            decoded = ["", "decoded frames:", *test.decoded] if test.decoded else []
            ET.SubElement(case, "system-out").text = "\n".join([*test.kernel_log, *decoded])
    if report.session_kernel_log:
        ET.SubElement(suite, "system-out").text = "\n".join(report.session_kernel_log[-300:])
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
