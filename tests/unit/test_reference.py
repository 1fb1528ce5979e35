"""The C selftest beside the Python suites: listing, selection, matching and the table."""

import pytest

from harness import reference
from harness.guest import reference as guest_reference
from harness.results import TestOutcome


@pytest.fixture
def cases(data_dir):
    return guest_reference.parse_listing((data_dir / "hmm-tests-7.2-list.txt").read_text())


def test_diagnostic_lines_are_not_cases(data_dir):
    text = ("# [INFO] detected hugetlb page size: 2048 KiB\n"
            + (data_dir / "hmm-tests-7.2-list.txt").read_text())
    assert len(guest_reference.parse_listing(text)) == 76


def test_listing_of_the_7_2_selftest(cases):
    # 35 hmm cases and 3 hmm2 cases, each in a private and a coherent variant
    assert len(cases) == 76
    assert cases[0] == "hmm.hmm_device_private.open_close"
    assert "hmm.hmm_device_coherent.benchmark_thp_migration" in cases
    assert cases[-1] == "hmm2.hmm2_device_coherent.double_map"


def test_only_twins_of_the_suites_tests_run(cases):
    suite = ["tests/guest/test_hmm.py::test_open_close[private]",
             "tests/guest/test_hmm.py::test_open_close[coherent]",
             "tests/guest/test_hmm2.py::test_snapshot[private]",
             "tests/guest/test_evict_pfns.py::test_evict_thp[private]"]
    assert guest_reference.twins_only(cases, suite) == [
        "hmm.hmm_device_private.open_close", "hmm.hmm_device_coherent.open_close",
        "hmm2.hmm2_device_private.snapshot"]


def test_mode_selects_variants(cases):
    private = guest_reference.select(cases, "private")
    assert len(private) == 38 and all("_device_private." in c for c in private)
    assert len(guest_reference.select(cases, "all")) == 76


@pytest.mark.parametrize("keyword,expected", [
    ("open_close", ["hmm.hmm_device_private.open_close"]),
    ("snapshot", ["hmm2.hmm2_device_private.snapshot"]),
    ("migrate and not huge and not multiple and not mixed and not remap and not partial "
     "and not release and not shared and not fault and not file",
     ["hmm.hmm_device_private.migrate"]),
    ("test_hmm2.py and double", ["hmm2.hmm2_device_private.double_map"]),
])
def test_keyword_uses_the_python_twins_names(cases, keyword, expected):
    private = guest_reference.select(cases, "private")
    assert [c for c in private if guest_reference.matches_keyword(c, keyword)] == expected


OPEN_CLOSE = "hmm.hmm_device_private.open_close"
NO_RESULT = f"hmm-tests printed no result line for {OPEN_CLOSE}"


@pytest.mark.parametrize("output,status,case,expected", [
    (f"ok 1 {OPEN_CLOSE}\n", 0, OPEN_CLOSE, ("passed", "")),
    ("not ok 1 hmm.hmm_device_coherent.migrate_multiple\n", 1,
     "hmm.hmm_device_coherent.migrate_multiple", ("failed", "")),
    ("ok 1 hmm.hmm_device_private.hmm_gup_test # SKIP Skipping test, could not find gup_test "
     "driver\n", 4, "hmm.hmm_device_private.hmm_gup_test",
     ("skipped", "Skipping test, could not find gup_test driver")),
    ("", -11, OPEN_CLOSE, ("error", f"{NO_RESULT} (exit status -11)")),
    ("# [INFO] detected hugetlb page size: 2048 KiB\n", 0, OPEN_CLOSE,
     ("error", f"{NO_RESULT} (exit status 0)")),
])
def test_outcome_from_tap_line_or_exit_status(output, status, case, expected):
    assert guest_reference.outcome(output, status, case) == expected


def _outcome(nodeid, outcome, duration=1.0):
    return TestOutcome(nodeid=nodeid, outcome=outcome, duration=duration)


def test_twins_are_paired_and_disagreements_listed():
    python = [_outcome("tests/guest/test_hmm.py::test_open_close[private]", "passed"),
              _outcome("tests/guest/test_hmm2.py::test_snapshot[coherent]", "passed"),
              _outcome("tests/guest/test_evict_pfns.py::test_evict_every_other[private]",
                       "passed")]
    c = [_outcome("c:hmm.hmm_device_private.open_close", "passed", 0.2),
         _outcome("c:hmm2.hmm2_device_coherent.snapshot", "failed", 0.3)]
    rows = reference.compare(python, c)
    assert [(r.test, r.variant, r.c_outcome, r.python_outcome) for r in rows] == [
        ("hmm.open_close", "private", "passed", "passed"),
        ("hmm2.snapshot", "coherent", "failed", "passed"),
        ("hmm.evict_every_other", "private", "-", "passed")]
    text = reference.table(rows)
    assert "1 of 3 cases disagree:" in text
    assert "time of the 2 paired cases: Python 2.0s, C 0.5s (Python/C 4.00)" in text
    assert "hmm2.snapshot [coherent]: C failed, Python passed" in text


def test_split_keeps_c_cases_out_of_the_python_results():
    python, c = reference.split([_outcome("c:hmm.hmm_device_private.migrate", "failed"),
                                 _outcome("tests/guest/test_hmm.py::test_migrate[private]",
                                          "passed")])
    assert [t.nodeid for t in python] == ["tests/guest/test_hmm.py::test_migrate[private]"]
    assert [t.nodeid for t in c] == ["c:hmm.hmm_device_private.migrate"]
