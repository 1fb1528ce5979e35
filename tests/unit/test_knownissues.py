"""Known issues as data, judged against the real results of 7.2 runs (captured from runs of
the default suite before the entries existed)."""

import json
from pathlib import Path

import pytest

from harness import knownissues, results
from harness.errors import UsageError

DEBIAN_72 = knownissues.KernelFacts("7.2.13+deb14-amd64",
                                    "Debian sid linux-binary-7.2.13+deb14-amd64 7.2.13-1", {})


def captured(data_dir: Path, name: str) -> list[results.TestOutcome]:
    return results.from_json(json.loads((data_dir / name).read_text())).tests


def judged(data_dir: Path, name: str, kernel=DEBIAN_72) -> dict[str, results.TestOutcome]:
    tests = captured(data_dir, name)
    knownissues.apply(tests, knownissues.load((knownissues.PROJECT_FILE,)), kernel)
    return {t.nodeid: t for t in tests}


def test_every_coherent_failure_of_7_2_is_a_known_failure(data_dir):
    tests = judged(data_dir, "results-coherent-7.2.json")
    left = {n: t.outcome for n, t in tests.items() if t.outcome not in results.ACCEPTED}
    assert left == {}
    known = {n: (t.actual_outcome, t.known_issue_id) for n, t in tests.items()
             if t.outcome == "known-failure"}
    assert known["tests/guest/test_hmm.py::test_migrate_anon_huge_err[coherent]"] == (
        "crashed", "coherent-fail-alloc-null-page")
    assert known["tests/guest/test_hmm.py::test_migrate_multiple[coherent]"] == (
        "failed", "coherent-pmd-mapped-thp-not-collected")
    assert known["tests/guest/test_hmm.py::test_migrate[coherent]"] == (
        "kernel-error", "coherent-second-chunk-warn")
    assert len(known) == 10


def test_private_hangs_of_7_2_are_known_and_the_benchmark_is_not(data_dir):
    tests = judged(data_dir, "results-private-7.2.json")
    whole = "tests/guest/test_evict_pfns.py::test_evict_while_huge_pages_are_freed[private-whole]"
    assert (tests[whole].outcome, tests[whole].actual_outcome) == ("known-failure", "hung")
    assert tests[whole].known_issue.endswith("See docs/known-issues.md#thp-free-race-soft-lockup")
    benchmark = tests["tests/guest/test_hmm_benchmark.py::test_benchmark_thp_migration[private]"]
    assert benchmark.outcome == "failed" and not benchmark.known_issue_state


def test_an_entry_for_another_kernel_does_not_apply(data_dir):
    old = knownissues.KernelFacts("6.19.3", "kernel image bzImage", {})
    tests = judged(data_dir, "results-coherent-7.2.json", old)
    assert not any(t.known_issue_state for t in tests.values())


def test_a_known_issue_that_passes_is_fixed_and_another_failure_is_unexpected():
    issues = knownissues.parse({"issue": [{
        "id": "race", "tests": "tests/guest/test_a.py::test_race", "variants": ["private"],
        "expect": [{"outcome": "hung", "kernel_error": "soft lockup"}],
        "diagnosis": "spins"}]}, "inline")
    tests = [results.TestOutcome("tests/guest/test_a.py::test_race[private]", "passed"),
             results.TestOutcome("tests/guest/test_a.py::test_race[private-repeat2]", "failed",
                                 message="AssertionError"),
             results.TestOutcome("tests/guest/test_a.py::test_race[coherent]", "hung"),
             results.TestOutcome("tests/guest/test_a.py::test_race[private-repeat3]", "hung",
                                 kernel_errors=["watchdog: BUG: soft lockup - CPU#0"]),
             results.TestOutcome("tests/guest/test_a.py::test_race[private-repeat4]", "hung",
                                 kernel_errors=["BUG: Bad page state"])]
    knownissues.apply(tests, issues, DEBIAN_72)
    assert [(t.outcome, t.known_issue_state) for t in tests] == [
        ("passed", "fixed?"), ("failed", "unexpected"), ("hung", ""),
        ("known-failure", "known-failure"), ("hung", "unexpected")]


@pytest.mark.parametrize(("spec", "release", "holds"), [
    (">=7.2", "7.2.13+deb14-amd64", True), (">=7.2, <7.3", "7.3-rc7-amd64", False),
    ("==7.2", "7.2.13", True), ("<7.2.13", "7.2.13", False), (">7.1", "7.2", True)])
def test_release_conditions(spec, release, holds):
    issue = knownissues.parse({"issue": [{"id": "x", "tests": "*", "kernels": {"release": spec},
                                          "expect": [{"outcome": "failed"}],
                                          "diagnosis": "d"}]}, "inline")[0]
    assert knownissues.applies_to_kernel(issue, knownissues.KernelFacts(release, "", {})) is holds


@pytest.mark.parametrize(("entry", "problem"), [
    ({"id": "x", "tests": "*", "expect": [{"outcome": "passed"}], "diagnosis": "d"},
     "expected outcome 'passed' is not one of"),
    ({"id": "x", "tests": "*", "expect": [{"outcome": "failed"}]}, "has no 'diagnosis'"),
    ({"id": "x", "tests": "*", "expect": [{"outcome": "failed"}], "diagnosis": "d",
      "kernels": {"release": "about 7.2"}}, "kernel release condition 'about 7.2'"),
    ({"id": "x", "tests": "*", "expect": [{"outcome": "failed", "message": "("}],
      "diagnosis": "d"}, "is not a regular expression"),
    ({"id": "x", "tests": "*", "expect": [{"outcome": "failed"}], "diagnosis": "d",
      "variants": ["shared"]}, "unknown variant shared"),
])
def test_bad_entries_are_named(entry, problem):
    with pytest.raises(UsageError, match="inline: issue 1") as error:
        knownissues.parse({"issue": [entry]}, "inline")
    assert problem in error.value.problem


def test_a_bad_file_is_named(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[[issue]\n")
    with pytest.raises(UsageError, match=f"{bad} is not valid TOML"):
        knownissues.load((bad,))
    with pytest.raises(UsageError, match="cannot read the known-issues file"):
        knownissues.load((tmp_path / "absent.toml",))


def test_a_hang_cut_short_by_the_kernels_stall_report_is_the_known_one(data_dir):
    tests = judged(data_dir, "results-private-7.2-stall.json")
    assert {t.outcome for t in tests.values()} == {"known-failure"}
    assert {t.actual_outcome for t in tests.values()} == {"hung"}


CRASH_RUN = "results-private-7.2-thp-free-crash.json"
WHOLE = "tests/guest/test_evict_pfns.py::test_{}_huge_pages_are_freed[private-whole]"
PARTIAL = "tests/guest/test_evict_pfns.py::test_{}_huge_pages_are_freed[private-partial]"


def test_the_thp_free_race_crash_is_known_by_its_stack(data_dir):
    """A cold run of the default suite where the race crashed copy_page() instead of locking
    up, and the partial variants passed."""
    tests = judged(data_dir, CRASH_RUN)
    crash = tests[WHOLE.format("migrate_back_while")]
    assert (crash.outcome, crash.actual_outcome, crash.known_issue_id) == (
        "known-failure", "crashed", "thp-free-race-freed-device-thp-copied")
    assert tests[WHOLE.format("evict_while")].known_issue_id == "thp-free-race-soft-lockup"


def test_an_intermittent_issue_that_passed_is_not_reproduced_not_fixed(data_dir):
    tests = judged(data_dir, CRASH_RUN)
    for name in ("evict_while", "migrate_back_while"):
        test = tests[PARTIAL.format(name)]
        assert (test.outcome, test.known_issue_state) == ("passed", "not reproduced")
    report = results.from_json(json.loads((data_dir / CRASH_RUN).read_text()))
    report.tests, report.strict_known_issues = list(tests.values()), True
    assert report.fixed_known_issues() == []


def test_another_crash_of_the_same_test_is_not_the_known_one(data_dir):
    tests = captured(data_dir, CRASH_RUN)
    crash = next(t for t in tests if t.nodeid == WHOLE.format("migrate_back_while"))
    crash.kernel_log = [line.replace("dmirror_devmem_fault_alloc_and_copy", "other_function")
                        for line in crash.kernel_log]
    knownissues.apply([crash], knownissues.load((knownissues.PROJECT_FILE,)), DEBIAN_72)
    assert (crash.outcome, crash.known_issue_state) == ("crashed", "unexpected")


def test_a_steady_entry_that_passed_is_fixed_even_beside_an_intermittent_one(data_dir):
    test = results.TestOutcome(WHOLE.format("evict_while"), "passed")
    knownissues.apply([test], knownissues.load((knownissues.PROJECT_FILE,)), DEBIAN_72)
    assert (test.known_issue_state, test.known_issue_id) == ("fixed?",
                                                             "thp-free-race-soft-lockup")


def test_intermittent_must_be_a_boolean():
    entry = {"id": "x", "tests": ["t"], "expect": [{"outcome": "failed"}], "diagnosis": "d",
             "intermittent": "sometimes"}
    with pytest.raises(UsageError, match="intermittent must be true or false"):
        knownissues.parse({"issue": [entry]}, "f.toml")


def test_the_thp_free_race_that_corrupts_the_free_list_is_known_by_its_stack(data_dir):
    """An empty-cache run of the default suite where the race locked up and then Oopsed in
    the device page allocator."""
    tests = judged(data_dir, "results-private-7.2-free-list-oops.json")
    hung = tests[WHOLE.format("migrate_back_while")]
    assert (hung.outcome, hung.actual_outcome, hung.known_issue_id) == (
        "known-failure", "hung", "thp-free-race-free-list-corrupted")
    raw = next(t for t in captured(data_dir, "results-private-7.2-free-list-oops.json")
               if t.nodeid == hung.nodeid)
    raw.kernel_log = [line for line in raw.kernel_log if "zone_device_page_init" not in line]
    knownissues.apply([raw], knownissues.load((knownissues.PROJECT_FILE,)), DEBIAN_72)
    assert (raw.outcome, raw.known_issue_state) == ("hung", "unexpected")
