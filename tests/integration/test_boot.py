"""Boot the default Debian kernel in QEMU, load the real test_hmm and run guest tests."""

import xml.etree.ElementTree as ET

import pytest

from harness import cli, debian

pytestmark = pytest.mark.vm


def test_default_kernel_runs_selftest_cases_in_private_mode(harness_run):
    run = harness_run("-k", "open_close or anon_write_prot or migrate_fault")
    assert run.status == cli.EXIT_PASSED, run.output
    data = run.json()
    outcomes = run.outcomes()
    assert outcomes == {
        "tests/guest/test_hmm.py::test_open_close[private]": "passed",
        "tests/guest/test_hmm.py::test_anon_write_prot[private]": "passed",
        "tests/guest/test_hmm.py::test_migrate_fault[private]": "passed",
    }
    assert data["kernel"]["release"] == debian.PINNED_RELEASE
    assert data["kconfig"]["CONFIG_DEVICE_PRIVATE"] == "y"
    assert data["accelerator"] in ("kvm", "tcg")
    assert all(t["duration"] > 0 for t in data["tests"])
    console = (run.results / "console.log").read_text()
    assert "hmm-harness: begin 1 tests/guest/test_hmm.py::test_open_close[private]" in console
    assert "HMM test module loaded" in console
    suite = ET.parse(run.results / "junit.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "guest up: kernel" in run.output and "[3/3] PASSED" in run.output


def test_failing_guest_assertion_exits_1_and_keeps_the_passing_case(harness_run):
    run = harness_run("--suite", "tests/integration/guest_suites/test_harness_outcomes.py")
    assert run.status == cli.EXIT_FAILED, run.output
    suite = "tests/integration/guest_suites/test_harness_outcomes.py"
    assert run.outcomes() == {
        f"{suite}::test_device_opens[private]": "passed",
        f"{suite}::test_deliberately_wrong_assertion[private]": "failed",
    }
    failed = next(t for t in run.json()["tests"] if t["outcome"] == "failed")
    assert "this case exists to fail" in failed["message"]
    junit = ET.parse(run.results / "junit.xml").getroot()
    assert junit.get("failures") == "1"
    assert "NOT PASSED" in run.output


def test_keyword_matching_nothing_is_a_harness_error(harness_run):
    run = harness_run("-k", "no_such_test_anywhere")
    assert run.status == cli.EXIT_HARNESS
    assert "no test matched -k 'no_such_test_anywhere'" in run.output
