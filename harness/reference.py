"""Pure: the Python suites side by side with the kernel's C selftest run in the same guest."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.guest import protocol
from harness.results import TestOutcome

C_PREFIX = protocol.C_NODEID_PREFIX
_PY_NODEID = re.compile(r"^(?:.*/)?test_(\w+?)\.py::test_(\w+)\[(\w+)\]$")


@dataclass(frozen=True)
class Row:
    test: str
    variant: str
    c_outcome: str  # "-" where the C selftest has no such case
    python_outcome: str
    c_seconds: float | None
    python_seconds: float | None
    c_nodeid: str | None
    python_nodeid: str | None

    @property
    def agree(self) -> bool:
        return self.c_outcome == self.python_outcome


def python_key(nodeid: str) -> tuple[str, str, str] | None:
    """(fixture, test, variant): the Python twin of a kernel case is `test_NAME[variant]` in
    test_hmm2.py for the hmm2 fixture and in any other module for the hmm fixture."""
    match = _PY_NODEID.match(nodeid)
    if match is None:
        return None
    module, test, variant = match.groups()
    return ("hmm2" if module == "hmm2" else "hmm"), test, variant


def c_key(nodeid: str) -> tuple[str, str, str] | None:
    parts = nodeid.removeprefix(C_PREFIX).split(".")
    if len(parts) != 3:
        return None
    fixture, variant, test = parts
    return fixture, test, variant.removeprefix(f"{fixture}_device_")


def split(outcomes: list[TestOutcome]) -> tuple[list[TestOutcome], list[TestOutcome]]:
    """(Python outcomes, C selftest outcomes)."""
    python = [o for o in outcomes if not o.nodeid.startswith(C_PREFIX)]
    return python, [o for o in outcomes if o.nodeid.startswith(C_PREFIX)]


def compare(python: list[TestOutcome], c_cases: list[TestOutcome]) -> list[Row]:
    """One row per C case with its Python twin, then the Python tests that have no twin."""
    by_key = {k: o for o in python if (k := python_key(o.nodeid))}
    rows, matched = [], set()
    for case in c_cases:
        key = c_key(case.nodeid)
        twin = by_key.get(key) if key else None
        if twin:
            matched.add(twin.nodeid)
        fixture, test, variant = key or ("?", case.nodeid, "?")
        rows.append(Row(test=f"{fixture}.{test}", variant=variant, c_outcome=case.outcome,
                        python_outcome=twin.outcome if twin else "-",
                        c_seconds=case.duration, python_seconds=twin.duration if twin else None,
                        c_nodeid=case.nodeid, python_nodeid=twin.nodeid if twin else None))
    for unmatched in python:
        if unmatched.nodeid in matched:
            continue
        fixture, name, variant = python_key(unmatched.nodeid) or ("", unmatched.nodeid, "")
        rows.append(Row(test=f"{fixture}.{name}" if fixture else name, variant=variant,
                        c_outcome="-", python_outcome=unmatched.outcome, c_seconds=None,
                        python_seconds=unmatched.duration, c_nodeid=None,
                        python_nodeid=unmatched.nodeid))
    return rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def table(rows: list[Row]) -> str:
    header = ("test", "variant", "C", "Python", "C time", "Python time")
    body = [(r.test, r.variant, r.c_outcome, r.python_outcome, _seconds(r.c_seconds),
             _seconds(r.python_seconds)) for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, *body]]
    paired = [r for r in rows if r.c_seconds is not None and r.python_seconds is not None]
    c_total = sum(r.c_seconds or 0.0 for r in paired)
    python_total = sum(r.python_seconds or 0.0 for r in paired)
    if paired and c_total > 0:
        lines.append(f"time of the {len(paired)} paired cases: Python {python_total:.1f}s, "
                     f"C {c_total:.1f}s (Python/C {python_total / c_total:.2f})")
    disagree = [r for r in rows if not r.agree and r.c_outcome != "-" and r.python_outcome != "-"]
    lines.append(f"{len(disagree)} of {len(rows)} cases disagree" + (":" if disagree else ""))
    lines += [f"  {r.test} [{r.variant}]: C {r.c_outcome}, Python {r.python_outcome}"
              for r in disagree]
    return "\n".join(lines)
