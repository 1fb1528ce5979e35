"""The kernel fails on purpose (tests/kmod/hmm_faults) and the harness must say so and go on.

One harness run serves every test here: the guest suite warns, locks up, oopses and hangs,
with an ordinary case after each, so the run boots three guests (the Oops and the hang each
end one) and takes about five minutes under TCG.
"""

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import cli
from harness.paths import PROJECT_ROOT
from tests.integration.conftest import HarnessRun

pytestmark = pytest.mark.vm

SUITE = "tests/integration/guest_suites/test_kernel_faults.py"
KMOD = "tests/kmod/hmm_faults"


def nodeid(name: str) -> str:
    return f"{SUITE}::{name}"


def source_line(text: str) -> int:
    """The line of hmm_faults.c holding `text`, for checking decoded frames."""
    lines = (PROJECT_ROOT / KMOD / "hmm_faults.c").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture(scope="module")
def faults_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("faults") / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--results", str(results),
                           "--extra-kmod", KMOD, "--suite", SUITE],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3000)
    print(proc.stderr[-6000:])
    return HarnessRun(proc, results)


@pytest.fixture(scope="module")
def tests(faults_run):
    return {t["nodeid"]: t for t in faults_run.json()["tests"]}


def test_every_case_has_its_outcome_and_the_run_exits_1(faults_run):
    assert faults_run.status == cli.EXIT_FAILED, faults_run.output
    assert faults_run.outcomes() == {
        nodeid("test_mirror_works_before_any_fault[private]"): "passed",
        nodeid("test_warn"): "kernel-error",
        nodeid("test_mirror_works_after_warn[private]"): "passed",
        nodeid("test_soft_lockup"): "kernel-error",
        nodeid("test_mirror_works_after_soft_lockup[private]"): "passed",
        nodeid("test_oops"): "crashed",
        nodeid("test_mirror_works_after_oops[private]"): "passed",
        nodeid("test_hang"): "hung",
        nodeid("test_mirror_works_after_hang[private]"): "passed",
    }


def test_warn_is_a_kernel_error_with_its_excerpt(tests):
    warn = tests[nodeid("test_warn")]
    assert warn["message"].startswith(
        "kernel error while the test ran (passed by its own checks): WARNING: hmm_faults.c:")
    assert warn["kernel_errors"][0].startswith("WARNING: hmm_faults.c:")
    assert "hmm_faults: deliberate warning" in warn["kernel_log"]
    assert any(line.startswith("RIP: 0010:hmm_faults_warn+") for line in warn["kernel_log"])
    assert warn["decoded"][0].startswith("RIP hmm_faults_warn+")
    assert warn["decoded"][0].endswith(
        f"hmm_faults_warn at {KMOD}/hmm_faults.c:{source_line('WARN(1')}")


def test_soft_lockup_is_a_kernel_error(tests):
    lockup = tests[nodeid("test_soft_lockup")]
    assert lockup["kernel_errors"][0].startswith("watchdog: BUG: soft lockup - CPU#")
    assert any("hmm_faults_spin+" in line for line in lockup["kernel_log"])


def test_oops_crashes_with_the_module_frame_in_its_log(tests):
    oops = tests[nodeid("test_oops")]
    assert oops["message"] == "the guest died while this test ran"
    log = oops["kernel_log"]
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000000" in log
    assert any(line.startswith("Oops: ") for line in log)
    assert any(line.startswith("RIP: 0010:hmm_faults_oops+") and line.endswith("[hmm_faults]")
               for line in log)
    assert any(line.startswith("Kernel panic - not syncing") for line in log)
    assert oops["decoded"][0].startswith("RIP hmm_faults_oops+")
    assert oops["decoded"][0].endswith(
        f"hmm_faults_oops at {KMOD}/hmm_faults.c:{source_line('return *nowhere;')}")


def test_hang_has_the_task_dump_of_the_sleeper(tests):
    hang = tests[nodeid("test_hang")]
    assert "the host dumped the guest's tasks" in hang["message"]
    log = hang["kernel_log"]
    assert hang["kernel_errors"][0].startswith("INFO: task python3:")
    blocked = log.index("sysrq: Show Blocked State")
    dump = log[blocked:blocked + 40]
    assert any(line.startswith("task:python3") and "state:D" in line for line in dump)
    assert any(line.strip().startswith("hmm_faults_sleep+") for line in dump)
    assert any(d.endswith(f"hmm_faults.c:{source_line('wait_event(sleepers')}")
               for d in hang["decoded"])


def test_cases_after_a_crash_or_hang_ran_in_fresh_guests(faults_run):
    """Each guest boot has its own console; the case after each fatal fault is in the next
    boot that reached the tests (a boot that died before user space, a TCG flake seen about
    once in 20 boots, keeps its console as console-early-death-N.log and is booted again)."""
    def number(console: Path) -> int:
        boot = re.search(r"-(\d+)$", console.stem)
        return int(boot.group(1)) if boot else 1

    consoles = sorted(faults_run.results.glob("console*.log"), key=number)
    live = [c for c in consoles if "early-death" not in c.name]

    def boot_of(name: str) -> int | None:
        marker = "hmm-harness: begin"
        for index, console in enumerate(live, 1):
            text = console.read_text(errors="replace")
            if any(marker in line and line.endswith(nodeid(name)) for line in text.splitlines()):
                return index
        return None

    assert boot_of("test_mirror_works_after_warn[private]") == 1
    assert boot_of("test_mirror_works_after_soft_lockup[private]") == 1
    assert boot_of("test_oops") == 1
    assert boot_of("test_mirror_works_after_oops[private]") == 2
    assert boot_of("test_hang") == 2
    assert boot_of("test_mirror_works_after_hang[private]") == 3
    assert len(live) == 3, [c.name for c in consoles]


def test_summary_lists_kernel_errors_first(faults_run):
    output = faults_run.output
    assert output.index("KERNEL ERRORS") < output.index("NOT PASSED")
    errors = output[output.index("KERNEL ERRORS"):output.index("NOT PASSED")]
    for name in ("test_warn", "test_soft_lockup", "test_oops", "test_hang"):
        assert nodeid(name) in errors
    assert "booting a fresh guest" in output


def test_junit_has_the_faults_as_errors(faults_run):
    suite = ET.parse(faults_run.results / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("9", "4", "0")
    errors = {case.get("name"): case.find("error") for case in suite.iter("testcase")}
    assert {name: error.get("type") for name, error in errors.items() if error is not None} == {
        "test_warn": "kernel-error", "test_soft_lockup": "kernel-error",
        "test_oops": "crashed", "test_hang": "hung"}
    oops = next(c for c in suite.iter("testcase") if c.get("name") == "test_oops")
    out = oops.find("system-out")
    assert out is not None and "decoded frames:" in (out.text or "")


def test_results_say_how_frames_were_decoded(faults_run):
    symbols = faults_run.json()["symbols"]
    assert "with DWARF" in symbols["hmm_faults"] and "with DWARF" in symbols["test_hmm"]
    assert "vmlinux" in symbols
