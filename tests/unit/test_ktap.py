"""KTAP from real guest events and consoles, read back with the kernel's own kunit_parser."""

import sys
from pathlib import Path

import pytest

from harness import console, ktap, results


def _report(data_dir, name, mode):
    events = results.parse_events((data_dir / f"events-{name}.jsonl").read_text())
    log = console.parse((data_dir / f"console-{name}.log").read_text())
    return results.RunReport(tests=results.merge(events, log), kernel={"release": "7.2.13"},
                             kconfig={}, accelerator="tcg", mode=mode)


def test_coherent_oops_run_as_ktap(data_dir):
    report = _report(data_dir, "coherent-oops", "coherent")
    text = ktap.to_ktap(report)
    lines = text.splitlines()
    assert lines[:2] == ["KTAP version 1", "1..1"]
    assert "    # Subtest: coherent" in lines
    assert lines[-1] == "not ok 1 coherent"
    crashed = next(i for i, line in enumerate(lines)
                   if line.endswith(" test_migrate_anon_huge_err"))
    assert lines[crashed].startswith("    not ok ")
    first_error = next(t for t in report.tests if t.outcome == "crashed").kernel_errors[0]
    assert lines[crashed - 1] == f"    # crashed: {first_error}"
    counts = report.counts()
    assert sum(line.startswith("    ok ") for line in lines) == counts["passed"] + counts[
        "skipped"]
    assert sum(line.startswith("    not ok ") for line in lines) == len(report.tests) - counts[
        "passed"] - counts["skipped"]


def test_skip_carries_its_reason(data_dir):
    text = ktap.to_ktap(_report(data_dir, "private-pass", "private"))
    skip = next(line for line in text.splitlines() if "# SKIP" in line)
    assert "CONFIG_GUP_TEST" in skip


def _kunit_parser():
    cache = Path.home() / ".cache" / "hmm-harness"
    found = sorted(cache.glob("**/tools/testing/kunit/kunit_parser.py"))
    if not found:
        pytest.skip(f"no kernel source with tools/testing/kunit/kunit_parser.py under {cache}")
    sys.path.insert(0, str(found[0].parent))
    import kunit_parser
    import kunit_printer

    return kunit_parser, kunit_printer


def test_kernel_parser_counts_match_results_json(data_dir, tmp_path):
    parser, printer = _kunit_parser()
    report = _report(data_dir, "coherent-oops", "coherent")
    with (tmp_path / "kunit.out").open("w") as output:
        parsed = parser.parse_run_tests(ktap.to_ktap(report).splitlines(),
                                        printer.Printer(output))
    expected = report.counts()
    assert parsed.counts.passed == expected["passed"]
    assert parsed.counts.skipped == expected["skipped"]
    assert parsed.counts.failed == len(report.tests) - expected["passed"] - expected["skipped"]
    assert parsed.counts.errors == 0
