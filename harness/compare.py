"""Pure: compare two runs test by test. Used by --baseline and by the kernel matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness import resultsdir
from harness.results import TestOutcome

# What counts as passing when two runs are compared: a known failure does not pass.
PASSING = frozenset({"passed", "skipped"})


class Change(StrEnum):
    STILL_PASSING = "still passing"
    STILL_FAILING = "unchanged failure"
    FAILING_DIFFERENTLY = "still failing, differently"
    REGRESSION = "regression"
    FIXED = "fixed"
    NEW_PASSING = "new, passing"
    NEW_FAILING = "new, not passing"
    GONE = "not run here"


# Changes that make a run worse than the one it is compared with.
WORSE = frozenset({Change.REGRESSION, Change.NEW_FAILING})
# Changes a test x kernel table marks as a difference.
DIFFERENT = frozenset(Change) - {Change.STILL_PASSING, Change.STILL_FAILING}


@dataclass(frozen=True)
class Row:
    nodeid: str
    before: str | None
    after: str | None
    change: Change


def classify(before: str | None, after: str | None) -> Change:
    if after is None:
        return Change.GONE
    if before is None:
        return Change.NEW_PASSING if after in PASSING else Change.NEW_FAILING
    if before in PASSING:
        return Change.STILL_PASSING if after in PASSING else Change.REGRESSION
    if after in PASSING:
        return Change.FIXED
    return Change.STILL_FAILING if before == after else Change.FAILING_DIFFERENTLY


def compare(before: dict[str, str], after: dict[str, str]) -> list[Row]:
    """One row per test of either run, in the order of `after`, then those only in
    `before`."""
    order = list(dict.fromkeys([*after, *before]))
    return [Row(n, before.get(n), after.get(n), classify(before.get(n), after.get(n)))
            for n in order]


def outcome_of(test: dict[str, Any]) -> str:
    """A baseline's outcome as observed: a known failure is compared as what happened."""
    return str(test.get("actual_outcome") or test["outcome"])


def load_outcomes(path: Path) -> dict[str, str]:
    """nodeid -> outcome of a results directory or its results.json."""
    data = resultsdir.read(path, "the baseline", "--baseline")
    return {str(t["nodeid"]): outcome_of(t) for t in data["tests"]}


def changes(baseline: dict[str, str], tests: list[TestOutcome]) -> list[dict[str, Any]]:
    """Each test's change against the baseline, as results.json keeps them."""
    now = {t.nodeid: t.actual_outcome or t.outcome for t in tests}
    return [asdict(row) for row in compare(baseline, now)]


def table(rows: list[Row]) -> str:
    """Regressions, fixes and unchanged failures; tests that still pass are only counted."""
    shown = [r for r in rows if r.change not in (Change.STILL_PASSING, Change.NEW_PASSING)]
    order = list(Change)
    shown.sort(key=lambda r: order.index(r.change) if r.change not in WORSE else -1)
    width = max([len("test"), *(len(r.nodeid) for r in shown)])
    lines = [f"{'test'.ljust(width)}  {'baseline':14}  {'this run':14}  change"]
    lines += [f"{r.nodeid.ljust(width)}  {(r.before or '-'):14}  {(r.after or '-'):14}  "
              f"{r.change}" for r in shown]
    def count(*changes: Change) -> int:
        return sum(r.change in changes for r in rows)

    lines.append(f"{count(*WORSE)} regressions, {count(Change.STILL_PASSING)} still passing, "
                 f"{count(Change.FIXED)} fixed, "
                 f"{count(Change.STILL_FAILING, Change.FAILING_DIFFERENTLY)} unchanged failures")
    return "\n".join(lines)
