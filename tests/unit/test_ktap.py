"""KTAP from real guest events and consoles (tests/integration/test_ktap_kunit.py reads it
back with the kernel's own kunit_parser)."""

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


def test_variants_are_subtests_and_cases_keep_their_other_parameters():
    report = results.RunReport(tests=[
        results.TestOutcome("t.py::test_free[private-whole]", "passed"),
        results.TestOutcome("t.py::test_free[private-partial-repeat2]", "passed"),
        results.TestOutcome("t.py::test_free[coherent-whole]", "skipped", message="no THP")],
        kernel={}, kconfig={}, accelerator="tcg", mode="all")
    lines = ktap.to_ktap(report).splitlines()
    assert "    # Subtest: private" in lines and "    # Subtest: coherent" in lines
    assert "    ok 1 test_free_whole" in lines and "    ok 2 test_free_partial_repeat2" in lines
    assert "    ok 1 test_free_whole # SKIP no THP" in lines
