"""--target host: the decisions made before anything is read off the machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import hostrun, knownissues, results, run
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
    argv = hostrun.pytest_argv(options, Path("/tmp/r/events.jsonl"), ["t.py::done"])
    assert argv[1:5] == ["-m", "pytest", "-p", "harness.guest.plugin"]
    for wanted in ("--hmm-no-load", "--hmm-events=/tmp/r/events.jsonl", "--hmm-mode=all",
                   "--hmm-repeat=2", "--hmm-seed=5", "-k", "--deselect=t.py::done"):
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
