"""Pure: a run's outcomes as one KTAP v1 document (Documentation/dev-tools/ktap.rst).

One subtest per variant (the `[private]` / `[coherent]` parameter of the nodeid), each
holding that variant's test cases, so kunit_parser and KernelCI read the same tree.
"""

from __future__ import annotations

import re

from harness.results import RunReport, TestOutcome

# KTAP has two directives, SKIP and TODO. A known failure (a case that went wrong exactly
# as a known-issues entry says) is written `not ok ... # TODO known issue: ...`: in TAP a
# TODO marks an expected failure, and kunit_parser, which ignores TODO, still counts it as a
# failure, so no reader mistakes a kernel bug for a pass.
_SKIPPED = frozenset({"skipped"})
_OK = frozenset({"passed"})

_VARIANTS = ("private", "coherent")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def _parameters(nodeid: str) -> list[str]:
    return nodeid.partition("[")[2].removesuffix("]").split("-") if "[" in nodeid else []


def variant_of(nodeid: str) -> str:
    return next((p for p in _parameters(nodeid) if p in _VARIANTS), "default")


def case_name(nodeid: str) -> str:
    """The test's function name with its parameters other than the variant."""
    function = nodeid.rpartition("::")[2].partition("[")[0] or nodeid
    others = [p for p in _parameters(nodeid) if p not in _VARIANTS]
    return _UNSAFE.sub("_", "_".join([function, *others])).strip("_") or "unnamed"


def _diagnostic(test: TestOutcome) -> str:
    text = test.kernel_errors[0] if test.kernel_errors else test.message
    lines = text.strip().splitlines()
    return lines[0] if lines else test.outcome


def _result_line(number: int, test: TestOutcome) -> list[str]:
    name = case_name(test.nodeid)
    if test.outcome in _OK:
        return [f"ok {number} {name}"]
    if test.outcome in _SKIPPED:
        return [f"ok {number} {name} # SKIP {_diagnostic(test)}"]
    if test.outcome == "known-failure":
        reason = test.known_issue or _diagnostic(test)
        return [f"# {test.outcome}: {_diagnostic(test)}",
                f"not ok {number} {name} # TODO known issue: {reason}"]
    return [f"# {test.outcome}: {_diagnostic(test)}", f"not ok {number} {name}"]


def to_ktap(report: RunReport) -> str:
    variants: dict[str, list[TestOutcome]] = {}
    for test in report.tests:
        variants.setdefault(variant_of(test.nodeid), []).append(test)
    lines = ["KTAP version 1", f"1..{len(variants)}"]
    for number, (variant, tests) in enumerate(variants.items(), start=1):
        body = ["KTAP version 1", f"# Subtest: {variant}", f"1..{len(tests)}"]
        for case_number, test in enumerate(tests, start=1):
            body += _result_line(case_number, test)
        lines += ["    " + line for line in body]
        all_ok = all(t.outcome in _OK | _SKIPPED for t in tests)
        all_skipped = all(t.outcome in _SKIPPED for t in tests)
        if all_skipped:
            lines.append(f"ok {number} {variant} # SKIP every case skipped")
        else:
            lines.append(f"{'ok' if all_ok else 'not ok'} {number} {variant}")
    return "\n".join(lines) + "\n"
