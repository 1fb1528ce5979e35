"""One report from the results of several runs (`python -m harness merge`).

The runs are the shards of one run (--shard, --jobs), runs of the same selection one after
the other (their tests become repetitions, as with --repeat), or, with allow_mixed, runs of
different kernels (each test is named after its kernel). The merged report is written and
judged like the report of one run. merge() decides; merge_directories() reads the inputs and
writes the merged report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness import compare, results, resultsdir, run
from harness.errors import UsageError
from harness.guest import protocol, shard
from harness.results import RunReport, TestOutcome


@dataclass(frozen=True)
class Part:
    source: str  # where the results came from, as the user named it
    report: RunReport


def kernel_identity(report: RunReport) -> str:
    return f"{report.kernel.get('release', '?')} ({report.kernel.get('origin', '?')})"


def merge(parts: list[Part], allow_mixed: bool = False) -> RunReport:
    if not parts:
        raise UsageError("nothing to merge", "name the results directories to merge")
    kernels = {kernel_identity(p.report) for p in parts}
    mixed = len(kernels) > 1
    if mixed and not allow_mixed:
        listing = "; ".join(f"{p.source}: {kernel_identity(p.report)}" for p in parts)
        raise UsageError(f"the results are of different kernels ({listing})",
                         "merge each kernel's results on their own, or give --allow-mixed "
                         "to put them in one report, each test named after its kernel")
    tests: list[TestOutcome] = []
    for group in _shard_groups(parts):
        tests += _tests_of(group, mixed)
    tests = _as_repetitions(tests)
    merged = _report_fields(parts, mixed)
    merged.tests = tests
    if any(protocol.repeat_number(t.nodeid) > 1 for t in tests):
        merged.repeats, merged.flaky = results.repetitions(tests)
    return merged


def _shard_groups(parts: list[Part]) -> list[list[Part]]:
    """The parts as groups that are each one run: all N shards of a selection together,
    an unsharded run alone. A shard whose siblings are missing, or given twice, is refused."""
    groups: list[list[Part]] = []
    shard_sets: dict[tuple[int, tuple[str, ...]], list[Part]] = {}
    for part in parts:
        info = part.report.shard
        if not info:
            groups.append([part])
            continue
        key = (shard.parse(info["shard"]).count, tuple(info["selection"]))
        if key not in shard_sets:
            shard_sets[key] = []
            groups.append(shard_sets[key])
        shard_sets[key].append(part)
    for (count, _), group in shard_sets.items():
        _check_complete(group, count)
    return groups


def _check_complete(group: list[Part], count: int) -> None:
    seen: dict[int, str] = {}
    for part in group:
        index = shard.parse(part.report.shard["shard"]).index
        if index in seen:
            raise UsageError(f"shard {index}/{count} is given twice: {seen[index]} and "
                             f"{part.source}", "give each shard's results once")
        seen[index] = part.source
    if missing := [k for k in range(1, count + 1) if k not in seen]:
        have = ", ".join(f"{k}/{count} ({seen[k]})" for k in sorted(seen))
        raise UsageError(
            f"shard{'s' if len(missing) > 1 else ''} "
            f"{', '.join(f'{k}/{count}' for k in missing)} of the run whose shards {have} "
            f"are given {'are' if len(missing) > 1 else 'is'} missing (or was cut from "
            "another selection: other -k, suites or --durations)",
            "give the results of every shard of the run")


def _tests_of(group: list[Part], mixed: bool) -> list[TestOutcome]:
    """One run's tests: a shard group's in the order of the selection they were cut from."""
    tests = [_named(t, p.report, mixed) for p in group for t in p.report.tests]
    if not group[0].report.shard:
        return tests
    selection = group[0].report.shard["selection"]
    position = {_named_id(n, group[0].report, mixed): i for i, n in enumerate(selection)}
    reported = {t.nodeid for t in tests}
    # Every test of the selection belongs to some shard; a shard that stopped before
    # collecting leaves its tests unreported.
    tests += [TestOutcome(nodeid, "not-run", message="no shard reported this test")
              for nodeid in position if nodeid not in reported]
    return sorted(tests, key=lambda t: position.get(t.nodeid, len(position)))


def _named_id(nodeid: str, report: RunReport, mixed: bool) -> str:
    return f"{report.kernel.get('release', '?')}::{nodeid}" if mixed else nodeid


def _named(test: TestOutcome, report: RunReport, mixed: bool) -> TestOutcome:
    return replace(test, nodeid=_named_id(test.nodeid, report, mixed)) if mixed else test


def _as_repetitions(tests: list[TestOutcome]) -> list[TestOutcome]:
    """A test reported by more than one run becomes repetitions 1..M of it, in run order."""
    bases = [protocol.without_repeat(t.nodeid) for t in tests]
    counts = {b: bases.count(b) for b in bases}
    seen: dict[str, int] = {}
    renamed = []
    for test, base in zip(tests, bases, strict=True):
        if counts[base] == 1:
            renamed.append(test)
            continue
        seen[base] = seen.get(base, 0) + 1
        renamed.append(replace(test, nodeid=_with_repeat(base, seen[base])))
    return renamed


def _with_repeat(nodeid: str, number: int) -> str:
    repeat = protocol.repeat_id(number)
    return f"{nodeid[:-1]}-{repeat}]" if nodeid.endswith("]") else f"{nodeid}[{repeat}]"


def _report_fields(parts: list[Part], mixed: bool) -> RunReport:
    reports = [p.report for p in parts]
    first = reports[0]
    modes = {r.mode for r in reports}
    kernel = first.kernel if not mixed else {
        "release": ", ".join(dict.fromkeys(r.kernel.get("release", "?") for r in reports)),
        "origin": "several kernels", "image": ""}
    log: list[str] = []
    for part in parts:
        if part.report.session_kernel_log:
            log += [f"== {part.source} ==", *part.report.session_kernel_log]
    benchmarks = [r.benchmark for r in reports if r.benchmark]
    return RunReport(
        tests=[], kernel=kernel, kconfig={} if mixed else first.kconfig,
        accelerator=", ".join(dict.fromkeys(r.accelerator for r in reports)),
        mode="all" if modes == {"private", "coherent"} or "all" in modes else first.mode,
        session_kernel_errors=list(dict.fromkeys(e for r in reports
                                                 for e in r.session_kernel_errors)),
        session_kernel_log=log,
        guest_status=max((r.guest_status for r in reports if r.guest_status is not None),
                         default=None),
        problems=[f"{p.source}: {problem}" for p in parts for problem in p.report.problems],
        wall_seconds=max(r.wall_seconds for r in reports),
        symbols={k: v for r in reports for k, v in r.symbols.items()},
        c_selftest=[t for r in reports for t in r.c_selftest],
        measurements=[m for r in reports for m in r.measurements],
        benchmark=benchmarks[0] if len(benchmarks) == 1 else {},
        reference=[row for r in reports for row in r.reference],
        strict_known_issues=any(r.strict_known_issues for r in reports),
        interrupted=next((r.interrupted for r in reports if r.interrupted), ""),
        boots=sum(r.boots for r in reports),
        finished=all(r.finished for r in reports),
        started_at=min((r.started_at for r in reports if r.started_at), default=""),
        kcidb_origin=first.kcidb_origin,
        merged_from=[p.source for p in parts])


def merge_directories(sources: list[Path], results_dir: Path, allow_mixed: bool = False,
                      baseline: Path | None = None,
                      strict_known_issues: bool = False) -> RunReport:
    """Merge the results directories `sources` into `results_dir` (results.json, JUnit, KTAP
    and the rest, as a run writes them)."""
    inputs = {source.resolve() for source in sources}
    if results_dir.resolve() in inputs:
        raise UsageError(f"the merged report would overwrite the results in {results_dir}",
                         "give --results a directory of its own for the merged report")
    parts = [Part(str(source), results.from_json(resultsdir.read(source, "the merge input",
                                                                 "merge")))
             for source in sources]
    before = compare.load_outcomes(baseline) if baseline else None
    merged = merge(parts, allow_mixed)
    merged.strict_known_issues = merged.strict_known_issues or strict_known_issues
    if before is not None:
        merged.baseline = str(baseline)
        merged.baseline_changes = compare.changes(before, merged.tests)
    run.prepare_results_dir(results_dir)
    run.clean_results(results_dir)
    run.write_reports(merged, results_dir)
    return merged
