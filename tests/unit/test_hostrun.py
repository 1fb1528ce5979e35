"""--target host: the decisions made before anything is read off the machine."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pytest

from harness import hostrun, knownissues, results, run, vm
from harness.commands import CommandRunner
from harness.errors import UsageError
from harness.guest import protocol

HOST = run.RunOptions(results_dir=Path("/tmp/r"), cache_dir=Path("/tmp/c"), target="host",
                      yes_this_host=True)


def test_the_host_is_used_only_when_the_user_says_so() -> None:
    with pytest.raises(UsageError) as refused:
        hostrun.check_options(dataclasses.replace(HOST, yes_this_host=False))
    assert "--yes-this-host" in refused.value.fix
    hostrun.check_options(HOST)


def test_what_only_a_guest_can_do_is_refused_by_name() -> None:
    with pytest.raises(UsageError) as refused:
        hostrun.check_options(dataclasses.replace(HOST, kernel="sid", jobs=2, reference=True))
    assert "--kernel, --reference, --jobs" in refused.value.problem


def test_kmsg_records_become_console_lines_the_parser_knows() -> None:
    marker = protocol.begin_marker(3, "tests/guest/test_hmm.py::test_anon_read[private]")
    line = hostrun.kmsg_line(f"5,1234,12330336,-;{marker}\n".encode())
    assert line == f"[   12.330336] {marker}"
    assert hostrun.kmsg_line(b" SUBSYSTEM=misc\n") is None


def test_pytest_runs_the_plugin_without_loading_test_hmm_and_writes_events_to_a_file() -> None:
    options = dataclasses.replace(HOST, mode="all", keyword="anon", repeat=2, seed=5)
    argv = hostrun.pytest_argv(options, Path("/tmp/r/events.jsonl"), ["t.py::done"],
                               Path("/tmp/r/host-build/test_hmm.ko"), ["spm_addr_dev0=0x1"])
    assert argv[1:5] == ["-m", "pytest", "-p", "harness.guest.plugin"]
    for wanted in ("--hmm-no-load", "--hmm-events=/tmp/r/events.jsonl", "--hmm-mode=all",
                   "--hmm-repeat=2", "--hmm-seed=5", "-k", "--deselect=t.py::done",
                   "--hmm-module=/tmp/r/host-build/test_hmm.ko",
                   "--hmm-module-param=spm_addr_dev0=0x1"):
        assert wanted in argv
    assert argv[-1].endswith("/tests/guest")


CRASH = Path(__file__).parent / "data" / "host-run-crash"  # a run on a guest, sysrq c midway


def test_the_journal_of_a_machine_that_died_says_what_finished_and_where_it_died(
        tmp_path: Path) -> None:
    for name in ("events.jsonl", "console.log"):
        (tmp_path / name).write_bytes((CRASH / name).read_bytes())
    order, rounds = hostrun.journalled_rounds(tmp_path)
    assert [n.split("::")[1] for n in order] == [
        "test_before_the_crash[private]", "test_the_machine_dies[private]",
        "test_after_the_crash[private]"]
    [outcomes] = rounds
    assert [t.outcome for t in outcomes[:2]] == ["passed", "crashed"]
    assert results.still_to_run(order, rounds) == [order[2]]
    hostrun.attach_previous_boot(rounds, ["[  9.1] Oops: 0002 [#1] SMP", "RIP: sysrq_handle_crash"],
                                 {"journalctl -k -b -1": "2 lines"})
    crashed = outcomes[1]
    assert crashed.message.startswith("the machine died while this test ran")
    assert "journalctl -k -b -1: 2 lines" in crashed.message
    assert crashed.kernel_errors == ["Oops: 0002 [#1] SMP"]


def test_a_host_run_is_judged_against_a_baseline_as_a_guest_run_is(tmp_path: Path) -> None:
    for name in ("events.jsonl", "console.log"):
        (tmp_path / name).write_bytes((CRASH / name).read_bytes())
    order, rounds = hostrun.journalled_rounds(tmp_path)
    baseline = {nodeid: "passed" for nodeid in order}
    report = results.RunReport(tests=[], kernel={}, kconfig={}, accelerator="host",
                               mode="private", baseline="unpatched")
    run.judge(report, results.combine(order, rounds), [],
              knownissues.KernelFacts("7.2.13+deb14-amd64", "host", {}), 1, baseline)
    # The crashed test, and the one the crash kept from running.
    assert [c["nodeid"] for c in report.regressions()] == order[1:]
    assert "crashed" in run.baseline_table(
        run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, baseline=tmp_path), report)


# A process that behaves like the plugin's pytest (events, markers in the kernel log) stands in
# for pytest, and a file for /proc/sysrq-trigger: this machine's kernel is not to be touched.
STUCK_PYTEST = """
import json, sys, time
events, kernel_log, nodeid, marker = sys.argv[1:]
with open(events, "a") as f:
    f.write(json.dumps({"event": "collected", "nodeids": [nodeid, nodeid + "2"]}) + "\\n")
    f.write(json.dumps({"event": "test-start", "nodeid": nodeid, "timeout": 120}) + "\\n")
time.sleep(1)  # the kernel's report comes after the test has started, as it would
with open(kernel_log, "a") as f:
    f.write(f"[  1.0] {marker}\\n")
    f.write("[  2.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [python3:99]\\n")
time.sleep(600)
"""


def test_a_test_the_kernel_reports_stuck_is_stopped_dumped_and_journalled_as_hung_with_stand_ins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "KERNEL_HANG_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(vm, "TASK_DUMP_QUIET_SECONDS", 0.2)
    monkeypatch.setattr(hostrun, "SYSRQ_TRIGGER", tmp_path / "sysrq-trigger")
    events, kernel_log = tmp_path / "events.jsonl", tmp_path / "console.log"
    nodeid = "tests/guest/test_hmm.py::test_stuck[private]"
    argv = [sys.executable, "-c", STUCK_PYTEST, str(events), str(kernel_log), nodeid,
            protocol.begin_marker(1, nodeid)]
    started = time.monotonic()
    watched = hostrun.run_watched(argv, {}, events, kernel_log, 120, CommandRunner())
    assert time.monotonic() - started < 30, "stopped on the kernel's report, not the timeout"
    assert (watched.status, watched.hung_nodeid) == (None, nodeid)
    assert "soft lockup" in watched.hung_reason
    assert (tmp_path / "sysrq-trigger").read_text() == "wlt"
    assert "--resume" in watched.problems[0]
    journal = results.parse_events(events.read_text())
    assert journal[-1] == {"event": "host-watchdog", "nodeid": nodeid,
                           "reason": watched.hung_reason}
    stuck, not_run = hostrun.merge_round(journal, kernel_log.read_text())
    assert (stuck.outcome, not_run.outcome) == ("hung", "not-run")
    assert stuck.message.endswith(hostrun.HOST_HANG_ACTION)


def test_pytest_that_ends_by_itself_gives_its_status(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "raise SystemExit(1)"]
    watched = hostrun.run_watched(argv, {}, tmp_path / "events.jsonl", tmp_path / "console.log",
                                  120, CommandRunner())
    assert (watched.status, watched.hung_nodeid, watched.problems) == (1, None, [])
