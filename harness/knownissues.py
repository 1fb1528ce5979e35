"""Pure: known kernel and test_hmm failures as data (known-issues.toml), and how a test's outcome
is judged against them.

A test that goes wrong exactly the way an entry expects becomes `known-failure`: listed, but
not failing the run. A known issue that passed is `fixed?`, unless the entry says the bug is
intermittent (a race that most runs miss, or a failure that shows only after certain tests
ran before it in the boot): then a pass is `not reproduced`, which proves nothing. A test
that goes wrong another way than its entry says keeps its outcome and fails the run as any
failure does.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.guest import protocol
from harness.paths import PROJECT_ROOT
from harness.results import TestOutcome

PROJECT_FILE = PROJECT_ROOT / "known-issues.toml"
# What a known issue can do to a test. A skip or a pass is never "known".
EXPECTABLE = frozenset({"failed", "error", "kernel-error", "hung", "crashed"})
KNOWN_FAILURE = "known-failure"
FIXED = "fixed?"
NOT_REPRODUCED = "not reproduced"
UNEXPECTED = "unexpected"
_VERSION_CONDITION = re.compile(r"^(>=|<=|==|<|>)\s*(\d+(?:\.\d+)*)$")
_VARIANTS = ("private", "coherent")


@dataclass(frozen=True)
class Expectation:
    """One way the test is known to go wrong; every field given must hold."""

    outcome: str
    message: str = ""  # a regular expression searched in the test's message
    kernel_error: str = ""  # a regular expression every kernel error report must match
    own_outcome: str = ""  # the test's own verdict under a kernel-error
    kernel_log: str = ""  # a regular expression searched in the test's kernel log


@dataclass(frozen=True)
class KnownIssue:
    id: str
    tests: tuple[str, ...]
    expect: tuple[Expectation, ...]
    diagnosis: str
    source: str  # file:entry, for error messages and results.json
    docs: str = ""
    variants: tuple[str, ...] = ()
    release: str = ""  # e.g. ">=7.2, <7.4"
    origin: str = ""  # an fnmatch pattern over the kernel's origin
    config: dict[str, str] = field(default_factory=dict)
    intermittent: bool = False  # a pass does not show the bug is gone


@dataclass(frozen=True)
class KernelFacts:
    release: str
    origin: str
    config: dict[str, str]


@dataclass(frozen=True)
class Judgement:
    issue: KnownIssue
    state: str  # KNOWN_FAILURE, FIXED, NOT_REPRODUCED or UNEXPECTED


def load(paths: tuple[Path, ...]) -> list[KnownIssue]:
    issues: list[KnownIssue] = []
    for path in paths:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as error:
            raise UsageError(f"cannot read the known-issues file {path}: {error.strerror}",
                             "give --known-issues an existing TOML file") from error
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path} is not valid TOML: {error}",
                             "fix the file; see known-issues.toml for the format") from error
        issues += parse(data, str(path))
    ids = [issue.id for issue in issues]
    if duplicate := next((i for i in ids if ids.count(i) > 1), None):
        raise UsageError(f"known issue '{duplicate}' is defined twice",
                         "give each [[issue]] entry its own id")
    return issues


def parse(data: dict[str, Any], origin_name: str) -> list[KnownIssue]:
    entries = data.get("issue", [])
    if not isinstance(entries, list):
        raise UsageError(f"{origin_name}: 'issue' must be an array of tables ([[issue]])",
                         "write each entry as [[issue]]")
    return [_entry(entry, f"{origin_name}: issue {number}")
            for number, entry in enumerate(entries, start=1)]


def _entry(entry: dict[str, Any], where: str) -> KnownIssue:
    def need(key: str) -> Any:
        if key not in entry:
            raise UsageError(f"{where} has no '{key}'",
                             "every entry needs id, tests, expect and diagnosis")
        return entry[key]

    tests = need("tests")
    if isinstance(tests, str):
        tests = [tests]
    expect = [Expectation(**_checked_expectation(e, where)) for e in need("expect")]
    variants = tuple(entry.get("variants", ()))
    if unknown := [v for v in variants if v not in _VARIANTS]:
        raise UsageError(f"{where}: unknown variant {', '.join(unknown)}",
                         f"use {' or '.join(_VARIANTS)}")
    kernels = entry.get("kernels", {})
    release = str(kernels.get("release", ""))
    _version_conditions(release, where)
    allowed = {"id", "tests", "expect", "diagnosis", "docs", "variants", "kernels",
               "intermittent"}
    if not isinstance(entry.get("intermittent", False), bool):
        raise UsageError(f"{where}: intermittent must be true or false",
                         "write intermittent = true for a race most runs miss, or for a "
                         "failure that depends on what ran before it")
    if extra := sorted(set(entry) - allowed):
        raise UsageError(f"{where}: unknown key {', '.join(extra)}",
                         f"known keys: {', '.join(sorted(allowed))}")
    return KnownIssue(id=str(need("id")), tests=tuple(tests), expect=tuple(expect),
                      diagnosis=" ".join(str(need("diagnosis")).split()), source=where,
                      docs=str(entry.get("docs", "")), variants=variants, release=release,
                      origin=str(kernels.get("origin", "")),
                      config={str(k): str(v) for k, v in kernels.get("config", {}).items()},
                      intermittent=bool(entry.get("intermittent", False)))


def _checked_expectation(raw: dict[str, Any], where: str) -> dict[str, str]:
    outcome = raw.get("outcome")
    if outcome not in EXPECTABLE:
        raise UsageError(f"{where}: expected outcome {outcome!r} is not one of "
                         f"{', '.join(sorted(EXPECTABLE))}",
                         "a known issue describes how a test goes wrong, never a pass or skip")
    fields = {k: str(v) for k, v in raw.items()}
    known = {"outcome", "message", "kernel_error", "own_outcome", "kernel_log"}
    if extra := sorted(set(fields) - known):
        raise UsageError(f"{where}: unknown key {', '.join(extra)} in expect",
                         f"use {', '.join(sorted(known))}")
    for key in ("message", "kernel_error", "kernel_log"):
        try:
            re.compile(fields.get(key, ""))
        except re.error as error:
            raise UsageError(f"{where}: {key} {fields[key]!r} is not a regular expression: "
                             f"{error}", "fix the pattern") from error
    return fields


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(p) for p in match.group().split(".")) if match else ()


def _version_conditions(spec: str, where: str) -> list[tuple[str, tuple[int, ...]]]:
    conditions = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _VERSION_CONDITION.match(part)
        if not match:
            raise UsageError(f"{where}: kernel release condition {part!r} is not understood",
                             "write conditions like '>=7.2, <7.4'")
        conditions.append((match.group(1), _version(match.group(2))))
    return conditions


def _release_holds(spec: str, release: str) -> bool:
    version = _version(release)
    for op, bound in _version_conditions(spec, "release"):
        if op == "==":
            # ==7.2 means every 7.2.x.
            if version[:len(bound)] != bound:
                return False
            continue
        width = max(len(version), len(bound))
        left, right = version + (0,) * (width - len(version)), bound + (0,) * (width - len(bound))
        if not {">=": left >= right, "<=": left <= right, "<": left < right,
                ">": left > right}[op]:
            return False
    return True


def applies_to_kernel(issue: KnownIssue, kernel: KernelFacts) -> bool:
    return ((not issue.release or _release_holds(issue.release, kernel.release))
            and (not issue.origin or fnmatch.fnmatchcase(kernel.origin, issue.origin))
            and all(kernel.config.get(name) == value for name, value in issue.config.items()))


def variant_of(nodeid: str) -> str:
    params = nodeid.partition("[")[2].rstrip("]").split("-")
    return next((p for p in params if p in _VARIANTS), "")


def matches_test(issue: KnownIssue, nodeid: str) -> bool:
    base = protocol.without_repeat(nodeid)
    bare = base.partition("[")[0]
    if issue.variants and variant_of(base) not in issue.variants:
        return False
    # Brackets in a pattern are the nodeid's parameter brackets, not fnmatch's sets.
    return any(fnmatch.fnmatchcase(base if "[" in pattern else bare,
                                   re.sub(r"[\[\]]", lambda m: f"[{m.group()}]", pattern))
               for pattern in issue.tests)


def expectation_holds(expect: Expectation, test: TestOutcome, outcome: str) -> bool:
    """Whether `test`, which went `outcome`, went wrong the way `expect` says."""
    return (outcome == expect.outcome
            and (not expect.message or re.search(expect.message, test.message) is not None)
            and (not expect.kernel_error or (bool(test.kernel_errors) and all(
                re.search(expect.kernel_error, e) for e in test.kernel_errors)))
            and (not expect.own_outcome or test.own_outcome == expect.own_outcome)
            and (not expect.kernel_log or re.search(
                expect.kernel_log, "\n".join(test.kernel_log), re.MULTILINE) is not None))


def judge(issues: list[KnownIssue], kernel: KernelFacts, test: TestOutcome,
          outcome: str) -> Judgement | None:
    """The first entry for this test and kernel, and what this outcome means for it."""
    relevant = [i for i in issues
                if matches_test(i, test.nodeid) and applies_to_kernel(i, kernel)]
    for issue in relevant:
        if any(expectation_holds(e, test, outcome) for e in issue.expect):
            return Judgement(issue, KNOWN_FAILURE)
    if not relevant or outcome not in EXPECTABLE | {"passed"}:
        return None  # a skip or a test that never ran says nothing about the issue
    if outcome == "passed":
        # Of several entries for the test, a pass says most about the one that is not a race.
        steady = [i for i in relevant if not i.intermittent]
        return Judgement(steady[0], FIXED) if steady else \
            Judgement(relevant[0], NOT_REPRODUCED)
    return Judgement(relevant[0], UNEXPECTED)


def apply(tests: list[TestOutcome], issues: list[KnownIssue], kernel: KernelFacts) -> None:
    """Marks each test an entry names: known-failure (outcome replaced, the observed one kept
    in actual_outcome), fixed? or unexpected."""
    for test in tests:
        observed = test.actual_outcome or test.outcome
        judgement = judge(issues, kernel, test, observed)
        if judgement is None:
            continue
        test.known_issue_id = judgement.issue.id
        docs = f" See {judgement.issue.docs}" if judgement.issue.docs else ""
        test.known_issue = judgement.issue.diagnosis + docs
        test.known_issue_state = judgement.state
        if judgement.state == KNOWN_FAILURE:
            test.actual_outcome, test.outcome = observed, KNOWN_FAILURE
