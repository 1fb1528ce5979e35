"""A cancelled, killed or compared run, for real: the harness is stopped while a real guest
runs the suites, and what it left on disk must be whole and resumable."""

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from harness import cli
from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm

SELECTION = "open_close or anon_read_prot or anon_write_prot or exclusive_cow"
OUTCOMES_SUITE = "tests/integration/guest_suites/test_harness_outcomes.py"
WRONG = f"{OUTCOMES_SUITE}::test_deliberately_wrong_assertion[private]"


def harness(*argv):
    return subprocess.Popen([sys.executable, "-m", "harness", "run", *argv], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished_tests(results):
    try:
        data = json.loads((results / "results.json").read_text())
    except (OSError, ValueError):
        return []
    return [t for t in data["tests"] if t["outcome"] not in ("not-run", "interrupted")]


def stop_after_first_result(proc, results, signal_number):
    deadline = time.monotonic() + 900
    while not finished_tests(results):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no test finished in time"
        time.sleep(0.5)
    proc.send_signal(signal_number)
    output, _ = proc.communicate(timeout=120)
    print(output[-4000:])
    return proc.returncode, output


def guests_of(results):
    """QEMU processes still running for this results directory."""
    found = subprocess.run(["pgrep", "-f", f"qemu-system.*{results}"], capture_output=True,
                           text=True)
    return found.stdout.split()


def resumed(results):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(results)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    print(proc.stderr[-4000:])
    return proc


def nodeids_started_in(results, events_file):
    text = (results / events_file).read_text()
    return [json.loads(line)["nodeid"] for line in text.splitlines()
            if '"test-start"' in line]


def test_sigint_leaves_whole_results_and_resume_finishes_the_run(tmp_path):
    results = tmp_path / "results"
    status, output = stop_after_first_result(harness("-k", SELECTION, "--results", str(results)),
                                             results, signal.SIGINT)
    assert status == cli.EXIT_INTERRUPTED, output
    assert "stopped by SIGINT" in output and "--resume" in output
    data = json.loads((results / "results.json").read_text())
    assert data["interrupted"] == "SIGINT" and data["passed"] is False
    outcomes = [t["outcome"] for t in data["tests"]]
    assert outcomes[0] == "passed" and len(outcomes) == 4
    assert set(outcomes[1:]) <= {"passed", "interrupted", "not-run"}
    suite = ET.parse(results / "junit.xml").getroot()
    assert suite.get("tests") == "4"
    assert not guests_of(results)

    done_before = [t["nodeid"] for t in finished_tests(results)]
    proc = resumed(results)
    assert proc.returncode == cli.EXIT_PASSED, proc.stderr
    final = json.loads((results / "results.json").read_text())
    assert [t["outcome"] for t in final["tests"]] == ["passed"] * 4
    assert final["finished"] is True and not final["interrupted"]
    rebooted = nodeids_started_in(results, "events-2.jsonl")
    assert rebooted and not set(rebooted) & set(done_before), "finished tests ran again"


def test_sigkill_keeps_the_finished_results_and_takes_qemu_along(tmp_path):
    results = tmp_path / "results"
    status, _ = stop_after_first_result(harness("-k", SELECTION, "--results", str(results)),
                                        results, signal.SIGKILL)
    assert status == -signal.SIGKILL
    done = finished_tests(results)
    assert done and all(t["outcome"] == "passed" for t in done)
    ET.parse(results / "junit.xml")
    deadline = time.monotonic() + 10
    while guests_of(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not guests_of(results), "QEMU outlived the harness"
    proc = resumed(results)
    assert proc.returncode == cli.EXIT_PASSED, proc.stderr
    assert len(finished_tests(results)) == 4


def test_baseline_fails_only_on_a_regression(tmp_path):
    known = tmp_path / "known.toml"
    known.write_text(f'''
[[issue]]
id = "deliberately-wrong"
tests = ["{WRONG.partition('[')[0]}"]
expect = [{{ outcome = "failed", message = "this case exists to fail" }}]
diagnosis = "The assertion is wrong on purpose."
''')
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"tests": [
        {"nodeid": f"{OUTCOMES_SUITE}::test_device_opens[private]", "outcome": "passed"},
        {"nodeid": WRONG, "outcome": "known-failure", "actual_outcome": "failed"}]}))
    unchanged = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--suite", OUTCOMES_SUITE, "--known-issues",
         str(known), "--baseline", str(earlier), "--results", str(tmp_path / "r1")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    print(unchanged.stderr[-3000:])
    assert unchanged.returncode == cli.EXIT_PASSED, unchanged.stderr
    assert "REGRESSIONS against" in unchanged.stderr and "KNOWN FAILURES" in unchanged.stderr
    data = json.loads((tmp_path / "r1" / "results.json").read_text())
    wrong = next(t for t in data["tests"] if t["nodeid"] == WRONG)
    assert (wrong["outcome"], wrong["actual_outcome"]) == ("known-failure", "failed")

    passed_there = tmp_path / "passed-there.json"
    passed_there.write_text(json.dumps({"tests": [{"nodeid": WRONG, "outcome": "passed"}]}))
    regressed = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--suite", OUTCOMES_SUITE, "--baseline",
         str(passed_there), "--results", str(tmp_path / "r2")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    print(regressed.stderr[-3000:])
    assert regressed.returncode == cli.EXIT_FAILED, regressed.stderr
    assert f"{WRONG}: passed -> failed" in regressed.stderr
    assert json.loads((tmp_path / "r2" / "results.json").read_text())["regressions"] == [WRONG]


@pytest.fixture(autouse=True)
def no_stray_guests(tmp_path):
    yield
    for pid in guests_of(tmp_path):
        os.kill(int(pid), signal.SIGKILL)
