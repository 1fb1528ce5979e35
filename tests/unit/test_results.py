"""Per-test outcomes from real guest events and consoles; results.json and JUnit."""

import json
import xml.etree.ElementTree as ET

import pytest

from harness import console, results


def _report(data_dir, name, mode):
    events = results.parse_events((data_dir / f"events-{name}.jsonl").read_text())
    log = console.parse((data_dir / f"console-{name}.log").read_text())
    return results.RunReport(tests=results.merge(events, log), kernel={"release": "7.2.13"},
                             kconfig={}, accelerator="tcg", mode=mode)


def test_private_run_passes(data_dir):
    report = _report(data_dir, "private-pass", "private")
    assert len(report.tests) == 38
    assert report.counts()["passed"] == 37 and report.counts()["skipped"] == 1
    skipped = next(t for t in report.tests if t.outcome == "skipped")
    assert "CONFIG_GUP_TEST" in skipped.message
    assert report.passed() and results.exit_status(report) == 0


def test_coherent_oops_run_gives_every_test_an_outcome(data_dir):
    report = _report(data_dir, "coherent-oops", "coherent")
    outcomes = {t.nodeid.split("::")[1]: t.outcome for t in report.tests}
    assert len(outcomes) == 38
    assert outcomes["test_migrate_anon_huge_err[coherent]"] == "crashed"
    assert outcomes["test_anon_write_child[coherent]"] == "kernel-error"
    assert outcomes["test_anon_read[coherent]"] == "passed"
    assert outcomes["test_double_map[coherent]"] == "not-run"
    crashed = next(t for t in report.tests if t.outcome == "crashed")
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000008" in \
        crashed.kernel_errors
    assert not report.passed() and results.exit_status(report) == 1


def test_passing_test_with_a_kernel_warning_is_a_kernel_error(data_dir):
    report = _report(data_dir, "coherent-oops", "coherent")
    write_child = next(t for t in report.tests if "anon_write_child" in t.nodeid)
    assert write_child.message.startswith("kernel error while the test ran (passed by its own")
    assert any("Conflicting mapping in same section" in line for line in write_child.kernel_log)


def test_truncated_last_event_is_ignored():
    events = results.parse_events('{"event": "collected", "nodeids": ["a"]}\n{"event": "te')
    assert events == [{"event": "collected", "nodeids": ["a"]}]


def test_results_json_has_what_ci_needs(data_dir):
    data = results.to_json(_report(data_dir, "coherent-oops", "coherent"))
    json.dumps(data)
    assert {"tests", "kernel", "kconfig", "accelerator", "counts", "passed"} <= set(data)
    assert {"nodeid", "outcome", "duration", "kernel_log", "kernel_errors"} <= set(
        data["tests"][0])


@pytest.mark.parametrize("name,failures,errors,skipped", [
    # The coherent console is trimmed after test 14, so later WARNs are not in it.
    ("private-pass", 0, 0, 1), ("coherent-oops", 4, 9, 1)])
def test_junit_counts(data_dir, name, failures, errors, skipped):
    root = ET.fromstring(results.to_junit(_report(data_dir, name, "x")))
    assert root.get("tests") == "38"
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == (
        str(failures), str(errors), str(skipped))
    cases = root.findall("testcase")
    assert len(cases) == 38
    assert cases[0].get("classname") == "tests.guest.test_hmm"
