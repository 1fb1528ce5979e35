"""Comparing two runs: --baseline's verdict and the kernel matrix's differences."""

import json

from harness import compare, matrix, results
from harness.compare import Change


def test_changes_between_two_runs():
    before = {"a": "passed", "b": "failed", "c": "hung", "d": "passed", "e": "skipped",
              "gone": "passed"}
    after = {"a": "passed", "b": "failed", "c": "crashed", "d": "kernel-error",
             "e": "passed", "new": "failed", "new2": "passed"}
    changes = {r.nodeid: r.change for r in compare.compare(before, after)}
    assert changes == {"a": Change.STILL_PASSING, "b": Change.STILL_FAILING,
                       "c": Change.FAILING_DIFFERENTLY, "d": Change.REGRESSION,
                       "e": Change.STILL_PASSING, "new": Change.NEW_FAILING,
                       "new2": Change.NEW_PASSING, "gone": Change.GONE}


def test_baseline_from_a_captured_run_excuses_its_own_failures(data_dir, tmp_path):
    baseline = compare.load_outcomes(data_dir / "results-private-7.2.json")
    report = results.from_json(json.loads((data_dir / "results-private-7.2.json").read_text()))
    now = {t.nodeid: t.outcome for t in report.tests}
    report.baseline = "earlier"
    report.baseline_changes = [vars(r) for r in compare.compare(baseline, now)]
    report.session_kernel_errors = []
    assert not report.regressions() and report.passed()
    opened = "tests/guest/test_hmm.py::test_open_close[private]"
    now[opened] = "failed"
    report.tests = [t for t in report.tests if t.nodeid != opened] + [
        results.TestOutcome(opened, "failed")]
    report.baseline_changes = [vars(r) for r in compare.compare(baseline, now)]
    assert [c["nodeid"] for c in report.regressions()] == [opened]
    assert not report.passed()
    table = compare.table([compare.Row(**c) for c in report.baseline_changes])
    assert table.splitlines()[1].startswith(opened) and "1 regressions" in table


def test_matrix_marks_the_same_differences(tmp_path):
    first = matrix.Column("sid", "sid", tmp_path, outcomes={"a": "passed", "b": "hung"})
    second = matrix.Column("exp", "exp", tmp_path, outcomes={"a": "passed", "b": "crashed"})
    third = matrix.Column("x", "x", tmp_path, error="no boot")
    assert not matrix.changed("a", [first, second, third])
    assert matrix.changed("b", [first, second, third])
