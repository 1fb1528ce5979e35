"""The boot loop's decisions and what it writes, without a guest."""

import json

import pytest

from harness import console, results, run, vm
from harness.run import NextBoot


@pytest.mark.parametrize(("reached", "timed_out", "deaths", "remaining", "progressed", "next"), [
    (False, False, 0, 0, False, NextBoot.RETRY),  # died before user space: once more
    (False, False, 1, 0, False, NextBoot.STOP),  # twice in a row: the kernel cannot boot
    (False, True, 0, 0, False, NextBoot.STOP),  # the run's time is up
    (True, False, 0, 5, True, NextBoot.CONTINUE),  # a crash or hang: fresh guest
    (True, False, 1, 5, True, NextBoot.CONTINUE),
    (True, False, 0, 0, True, NextBoot.STOP),  # everything ran
    (True, False, 0, 5, False, NextBoot.STOP),  # a boot that ran nothing will not do better
    (True, True, 0, 5, True, NextBoot.STOP),
])
def test_next_boot(reached, timed_out, deaths, remaining, progressed, next):
    assert run.next_boot(reached, timed_out, deaths, remaining, progressed) is next


def test_a_test_in_progress_is_interrupted_crashed_or_unfinished(data_dir):
    events = results.parse_events((data_dir / "events-coherent-oops.jsonl").read_text())
    log = console.parse((data_dir / "console-coherent-oops.log").read_text())
    crashed = [t for t in results.merge(events, log) if t.outcome == "crashed"]
    assert len(crashed) == 1
    stopped = {t.nodeid: t for t in results.merge(events, log, in_progress="interrupted")}
    assert stopped[crashed[0].nodeid].outcome == "interrupted"
    snapshot = {t.nodeid: t for t in results.merge(events, log, in_progress="not-run")}
    assert snapshot[crashed[0].nodeid].outcome == "not-run"
    assert results.still_to_run(list(snapshot), [list(snapshot.values())]) == [
        n for n, t in snapshot.items() if t.outcome == "not-run"]


def test_repetitions_find_the_flaky_test():
    tests = [results.TestOutcome("t.py::a[private-repeat1]", "passed"),
             results.TestOutcome("t.py::a[private-repeat2]", "failed"),
             results.TestOutcome("t.py::b[repeat1]", "passed"),
             results.TestOutcome("t.py::b[repeat2]", "passed"),
             results.TestOutcome("t.py::c[private-repeat2]", "hung"),
             results.TestOutcome("t.py::c[private-repeat1]", "hung"),
             results.TestOutcome("t.py::d[private-repeat1]", "not-run")]
    repeats, flaky = results.repetitions(tests)
    assert repeats == {"t.py::a[private]": ["passed", "failed"],
                       "t.py::b": ["passed", "passed"], "t.py::c[private]": ["hung", "hung"]}
    assert flaky == ["t.py::a[private]"]


def test_results_json_reads_back_as_written(data_dir, tmp_path):
    data = json.loads((data_dir / "results-coherent-7.2.json").read_text())
    report = results.from_json(data)
    run.write_reports(report, tmp_path)
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["tests"] == results.to_json(results.from_json(again))["tests"]
    assert [t["outcome"] for t in again["tests"]] == [t["outcome"] for t in data["tests"]]
    assert not list(tmp_path.glob(".*partial"))


def test_saved_options_come_back_for_resume(tmp_path):
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path / "cache", mode="all",
                             keyword="migrate", repeat=3, known_issues=(tmp_path / "k.toml",),
                             suites=("tests/guest/test_hmm.py",))
    run.save_options(options)
    again = run.load_options(tmp_path)
    assert again == run.RunOptions(**{**vars(options), "resume": True})


def feed(follower_path, lines):
    with open(follower_path, "a") as console_file:
        console_file.write("".join(f"{line}\n" for line in lines))


def test_the_kernels_own_stall_report_cuts_the_wait(data_dir, tmp_path):
    """The RCU stall of the 7.2 THP free race, as its console printed it."""
    captured = (data_dir / "console-thp-free-race-stall.log").read_text().splitlines()
    begin = next(i for i, line in enumerate(captured) if "huge_pages_are_freed" in line)
    path = tmp_path / "console.log"
    follower = vm.ConsoleFollower(path)
    watchdog = vm.Watchdog(120)
    nodeid = console.marker(console.strip_timestamp(captured[begin]))[1]
    watchdog.observe({"event": "test-start", "nodeid": nodeid, "timeout": 120}, now=0.0)
    feed(path, captured[:begin + 1])
    assert follower.poll_hang_reports() == [] and follower.open_test == nodeid
    assert watchdog.deadline == 120 + vm.HANG_GRACE_SECONDS
    feed(path, captured[begin + 1:])
    reports = follower.poll_hang_reports()
    assert reports[0] == (nodeid, "rcu: INFO: rcu_preempt self-detected stall on CPU")
    for test, report in reports:
        watchdog.kernel_reported_hang(test, report, now=21.6)
    assert watchdog.deadline == 21.6 + vm.KERNEL_HANG_GRACE_SECONDS
    assert "rcu_preempt self-detected stall" in watchdog.reason
    assert watchdog.expired(21.6 + vm.KERNEL_HANG_GRACE_SECONDS + 0.1)


def test_a_report_from_another_test_does_not_count():
    watchdog = vm.Watchdog(120)
    watchdog.observe({"event": "guest-started"}, now=0.0)
    watchdog.observe({"event": "test-start", "nodeid": "t.py::b"}, now=0.0)
    watchdog.kernel_reported_hang("t.py::a", "watchdog: BUG: soft lockup - CPU#0", now=5.0)
    assert watchdog.deadline == 120 + vm.HANG_GRACE_SECONDS
    watchdog.observe({"event": "test-result", "nodeid": "t.py::b"}, now=6.0)
    watchdog.kernel_reported_hang(None, "watchdog: BUG: soft lockup - CPU#0", now=7.0)
    assert not watchdog.expired(1000.0)


def test_a_later_boot_gives_an_unfinished_test_its_outcome():
    first = [results.TestOutcome("a", "hung"), results.TestOutcome("b", "not-run")]
    second = [results.TestOutcome("b", "interrupted")]
    third = [results.TestOutcome("b", "hung"), results.TestOutcome("a", "passed")]
    assert [t.outcome for t in results.combine(["a", "b"], [first, second])] == [
        "hung", "interrupted"]
    assert [t.outcome for t in results.combine(["a", "b"], [first, second, third])] == [
        "hung", "hung"]
    assert results.still_to_run(["a", "b"], [first, second, third]) == []


@pytest.mark.parametrize(("requested", "kernel_problem", "mkfs", "problem"), [
    ("image", None, True, None),
    ("9p", None, True, "--guest-root 9p"),
    ("image", "the kernel has no CONFIG_EROFS_FS", True, "the kernel has no CONFIG_EROFS_FS"),
    ("image", None, False, "mkfs.erofs is not installed (apt-get install erofs-utils, or run "
                           "ci/bootstrap)"),
])
def test_where_the_guest_root_comes_from(requested, kernel_problem, mkfs, problem):
    assert run.root_image_problem(requested, kernel_problem, mkfs) == problem


def test_an_unknown_guest_root_is_refused(tmp_path):
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, guest_root="nfs")
    with pytest.raises(run.UsageError, match="unknown --guest-root 'nfs'"):
        run.validate_request(options)


def test_a_guest_stuck_before_user_space_is_given_up_on():
    watchdog = vm.Watchdog(120, started=10.0)
    assert not watchdog.expired(10.0 + vm.BOOT_STALL_SECONDS - 1)
    assert watchdog.expired(10.0 + vm.BOOT_STALL_SECONDS + 1)
    assert "did not reach user space within 300 s" in watchdog.expiry_reason()


def test_once_user_space_runs_only_the_tests_have_deadlines():
    watchdog = vm.Watchdog(120, started=0.0)
    watchdog.observe({"event": "guest-started"}, now=6.0)
    assert not watchdog.expired(10 * vm.BOOT_STALL_SECONDS)
    watchdog.observe({"event": "test-start", "nodeid": "t.py::a"}, now=3000.0)
    assert watchdog.expired(3000.0 + 120 + vm.HANG_GRACE_SECONDS + 1)
    assert watchdog.expiry_reason().startswith("the test outlived its timeout")
