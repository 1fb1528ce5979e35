"""`--kernel` given more than once: the same selection on each kernel, then one table of
test x kernel (results.json in the results directory, one subdirectory per kernel).

The table and the JSON are pure; run_matrix() runs the kernels one after the other.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import compare, kernelspec, run
from harness.commands import CommandRunner
from harness.errors import HarnessError, UsageError
from harness.progress import Progress, summary

SUITE_PREFIX = "tests/guest/"
CHANGED = "*"


@dataclass
class Column:
    spec: str  # as given to --kernel
    label: str  # column heading and subdirectory name
    results_dir: Path
    release: str = ""
    origin: str = ""
    error: str = ""  # the harness could not build, boot or run this kernel
    outcomes: dict[str, str] = field(default_factory=dict)
    passed: bool = False


def labels(specs: list[str]) -> list[str]:
    """Distinct, file-name-safe labels: the spec's own name, numbered when two collide."""
    names = []
    for spec in specs:
        text = kernelspec.label(kernelspec.spec_from_text(spec)) if kernelspec.is_path_spec(spec) \
            else spec.replace(":", "-")
        names.append(re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "kernel")
    return [f"{i}-{name}" if names.count(name) > 1 else name
            for i, name in enumerate(names, start=1)]


def columns_for(specs: list[str], results_dir: Path) -> list[Column]:
    if len(set(specs)) != len(specs):
        raise UsageError(f"--kernel names the same kernel twice: {' '.join(specs)}",
                         "give each kernel once")
    return [Column(spec, name, results_dir / name) for spec, name in zip(specs, labels(specs),
                                                                          strict=True)]


def test_order(columns: list[Column]) -> list[str]:
    order: dict[str, None] = {}
    for column in columns:
        order.update(dict.fromkeys(column.outcomes))
    return list(order)


def changed(nodeid: str, columns: list[Column]) -> bool:
    """Whether the test's outcome differs between kernels that ran: each kernel is compared
    with the first that ran, as --baseline compares two runs."""
    ran = [c for c in columns if not c.error]
    return any(row.before != row.after
               for c in ran[1:]
               for row in compare.compare(ran[0].outcomes, c.outcomes) if row.nodeid == nodeid)


def table(columns: list[Column]) -> str:
    """Test x kernel; rows whose outcome differs between kernels are marked with *."""
    rows = test_order(columns)
    names = [n.removeprefix(SUITE_PREFIX) for n in rows]
    first = max([len("test"), *map(len, names)])
    widths = [max(len(c.label), len(c.release), 12) for c in columns]
    lines = ["  ".join(["test".ljust(first), *(c.label.ljust(w) for c, w in
                                               zip(columns, widths, strict=True))]),
             "  ".join(["".ljust(first), *(c.release.ljust(w) for c, w in
                                           zip(columns, widths, strict=True))]).rstrip()]
    for nodeid, name in zip(rows, names, strict=True):
        cells = [("error" if c.error else c.outcomes.get(nodeid, "-")).ljust(w)
                 for c, w in zip(columns, widths, strict=True)]
        mark = CHANGED if changed(nodeid, columns) else ""
        lines.append("  ".join([name.ljust(first), *cells, mark]).rstrip())
    differing = sum(changed(n, columns) for n in rows)
    lines.append(f"{differing} of {len(rows)} tests differ between kernels ({CHANGED})")
    for column in columns:
        if column.error:
            lines.append(f"{column.label}: could not run: {column.error}")
    return "\n".join(lines)


def to_json(columns: list[Column]) -> dict[str, Any]:
    return {
        "kernels": [{"spec": c.spec, "label": c.label, "release": c.release, "origin": c.origin,
                     "results": str(c.results_dir), "passed": c.passed, "error": c.error}
                    for c in columns],
        "tests": {nodeid: {c.label: ("error" if c.error else c.outcomes.get(nodeid))
                           for c in columns} for nodeid in test_order(columns)},
        "changed": [n for n in test_order(columns) if changed(n, columns)],
    }


def status(columns: list[Column]) -> str:
    """passed, failed (some test did not pass on some kernel) or error (some kernel could
    not run, and nothing failed elsewhere)."""
    if any(not c.error and not c.passed for c in columns):
        return "failed"
    if any(c.error for c in columns):
        return "error"
    return "passed"


def run_matrix(options: run.RunOptions, specs: list[str], runner: CommandRunner,
               progress: Progress) -> list[Column]:
    run.prepare_results_dir(options.results_dir)
    shutil.rmtree(options.results_dir / "guest", ignore_errors=True)  # one per kernel
    (options.results_dir / "results.json").unlink(missing_ok=True)
    columns = columns_for(specs, options.results_dir)
    for column in columns:  # bad specs fail before any kernel runs
        run.validate(replace(options, kernel=column.spec, results_dir=column.results_dir))
    for number, column in enumerate(columns, start=1):
        progress.say(f"kernel {number}/{len(columns)}: {column.spec}")
        try:
            # Each kernel counts its own tests.
            report = run.run(replace(options, kernel=column.spec,
                                     results_dir=column.results_dir), runner,
                             Progress(progress.stream))
        except HarnessError as error:
            column.error = error.problem.splitlines()[0]
            progress.say(f"{column.spec}: {error.problem}")
            continue
        if runner.dry_run:
            continue
        column.release = report.kernel.get("release", "")
        column.origin = report.kernel.get("origin", "")
        column.outcomes = {t.nodeid: t.outcome for t in report.tests}
        column.passed = report.passed()
        progress.say(summary(report))
    if not runner.dry_run:
        (options.results_dir / "results.json").write_text(json.dumps(to_json(columns),
                                                                      indent=2) + "\n")
    return columns

