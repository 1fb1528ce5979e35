"""Bisection decisions: a run's verdict, and what git bisect said (outputs captured from git
2.39 on a six-commit repository)."""

from pathlib import Path

from harness import bisect
from harness.results import RunReport, TestOutcome

START = """\
Bisecting: 2 revisions left to test after this (roughly 1 step)
[8090c04c6383287d3a94aeddf5933eed184d1cfd] c3
exit status 0
"""
FOUND = """\
9b9af01ca1b5063aa003109d33db4eb885f39995 is the first bad commit
commit 9b9af01ca1b5063aa003109d33db4eb885f39995
Author: a <a@b>
Date:   Sat Nov 21 02:11:49 2026 +0000

    c2

 f | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)
exit status 0
"""
ONLY_SKIPPED = """\
There are only 'skip'ped commits left to test.
The first bad commit could be any of:
36a2f7ebd43f2856923de0325e56126186d749b0
8090c04c6383287d3a94aeddf5933eed184d1cfd
We cannot bisect more!
exit status 2
"""


def report(*outcomes: str) -> RunReport:
    tests = [TestOutcome(f"t{i}", outcome) for i, outcome in enumerate(outcomes)]
    return RunReport(tests=tests, kernel={}, kconfig={}, accelerator="tcg", mode="private")


def test_verdicts():
    assert bisect.verdict(report("passed", "skipped")) == bisect.GOOD
    assert bisect.verdict(report("passed", "failed")) == bisect.BAD
    assert bisect.verdict(report("kernel-error")) == bisect.BAD
    assert bisect.verdict(report("crashed")) == bisect.BAD
    assert bisect.verdict(None) == bisect.SKIP  # could not build, boot or run


def test_kernel_error_outside_tests_is_bad():
    failing = report("passed")
    failing.session_kernel_errors = ["BUG: unable to handle page fault"]
    assert bisect.verdict(failing) == bisect.BAD


def test_parse_git_bisect_output():
    assert bisect.parse_step(START) == bisect.Next("8090c04c6383287d3a94aeddf5933eed184d1cfd")
    assert bisect.parse_step(FOUND) == bisect.Found("9b9af01ca1b5063aa003109d33db4eb885f39995")
    assert bisect.parse_step(ONLY_SKIPPED) == bisect.Ambiguous(
        ("36a2f7ebd43f2856923de0325e56126186d749b0", "8090c04c6383287d3a94aeddf5933eed184d1cfd"))
    stuck = bisect.parse_step("fatal: bad revision 'nope'\nexit status 128\n")
    assert stuck == bisect.Stuck("fatal: bad revision 'nope'")


def test_paths_into_the_repository_move_into_the_worktree(tmp_path):
    tree, worktree = tmp_path / "repo", tmp_path / "cache/worktree"
    (tree / "lib").mkdir(parents=True)
    assert bisect.inside_worktree(tree / "lib", tree, worktree) == worktree / "lib"
    assert bisect.inside_worktree(tmp_path / "elsewhere", tree, worktree) == \
        tmp_path / "elsewhere"


def test_failing_log_has_message_and_kernel_log():
    run = report("passed", "failed")
    run.tests[1].message = "assert 0 == 1"
    run.tests[1].kernel_log = ["hmm-harness: begin 2 t1", "test_hmm: oops"]
    text = bisect.failing_log(run)
    assert text.splitlines() == ["--- failed: t1", "assert 0 == 1", "kernel log while it ran:",
                                 "  hmm-harness: begin 2 t1", "  test_hmm: oops"]


def test_summary_text_names_culprit():
    result = bisect.BisectReport(
        steps=[bisect.Step("a" * 40, "good change", "good", "/r/a"),
               bisect.Step("b" * 40, "breaks reads", "bad", "/r/b", failed=["t1"])],
        culprit="b" * 40, culprit_description="commit bbbb", failing_log="--- failed: t1")
    text = bisect.text(result)
    assert f"first bad commit: {'b' * 40}" in text
    assert "bbbbbbbbbbbb bad  breaks reads" in text and "--- failed: t1" in text


def test_step_results_go_under_steps(tmp_path):
    options = bisect.BisectOptions(tmp_path / "repo", "v1", "v2",
                                   bisect.run.RunOptions(results_dir=tmp_path / "r",
                                                         cache_dir=tmp_path / "c",
                                                         kernel="sid",
                                                         test_hmm_source=tmp_path / "repo/lib"))
    worktree = Path("/cache/worktree")
    step = bisect._step_options(options, worktree, "c" * 40)
    assert step.results_dir == tmp_path / "r/steps" / ("c" * 12)
    assert step.test_hmm_source == worktree / "lib"
    assert step.kernel == "sid"
