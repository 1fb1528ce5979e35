"""`harness bisect`: the first commit between --good and --bad where the selected tests stop
passing.

The bisection runs in a git worktree of the repository under the harness's cache, so the
user's checkout is left alone, and the same worktree path (hence the same out-of-tree build
directory and ccache entries) serves every bisection of that repository. The repository is
the kernel under test (built at each step, incrementally), or, with --kernel, the source of
test_hmm given by --test-hmm-source, built for that fixed kernel.

Each step is one `harness run`, in process: every selected test passed -> good; a test did
not pass -> bad; the harness could not build, boot or run -> skip (what `git bisect run` does
with exit status 125). Deciding is pure (verdict, parse_step); git runs through the
CommandRunner.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness import kernelspec, run
from harness.commands import CommandRunner, require_tool
from harness.errors import CommandFailedError, HarnessError, UsageError
from harness.progress import Progress, summary
from harness.results import PASSING, RunReport

GOOD, BAD, SKIP = "good", "bad", "skip"


@dataclass(frozen=True)
class BisectOptions:
    tree: Path
    good: str
    bad: str
    # The run at each step; kernel None: the tree itself if it is a kernel tree, else the
    # default kernel.
    run: run.RunOptions


@dataclass(frozen=True)
class Next:
    commit: str


@dataclass(frozen=True)
class Found:
    commit: str


@dataclass(frozen=True)
class Ambiguous:
    """Only skipped commits are left: the first bad commit is one of these."""

    commits: tuple[str, ...]


@dataclass(frozen=True)
class Stuck:
    message: str


StepResult = Next | Found | Ambiguous | Stuck


def verdict(report: RunReport | None) -> str:
    """None: the harness could not build, boot or run this commit."""
    if report is None:
        return SKIP
    return GOOD if report.passed() else BAD


_EXIT = re.compile(r"^exit status (\d+)\s*$", re.M)


def parse_step(output: str) -> StepResult:
    """What `git bisect start|good|bad|skip` said."""
    if found := re.search(r"^([0-9a-f]{40}) is the first bad commit$", output, re.M):
        return Found(found.group(1))
    if "The first bad commit could be any of:" in output:
        tail = output.split("The first bad commit could be any of:", 1)[1]
        return Ambiguous(tuple(re.findall(r"^([0-9a-f]{40})$", tail, re.M)))
    if step := re.search(r"^Bisecting: .*\n\[([0-9a-f]{40})\]", output, re.M):
        return Next(step.group(1))
    return Stuck(_EXIT.sub("", output).strip() or "git bisect said nothing")


def inside_worktree(path: Path, tree: Path, worktree: Path) -> Path:
    """A path into the repository, moved to the same place in the worktree."""
    resolved = path.resolve()
    root = tree.resolve()
    return worktree / resolved.relative_to(root) if resolved.is_relative_to(root) else path


@dataclass
class Step:
    commit: str
    subject: str
    verdict: str
    results: str
    problem: str = ""  # why the step was skipped
    failed: list[str] = field(default_factory=list)


@dataclass
class BisectReport:
    steps: list[Step] = field(default_factory=list)
    culprit: str | None = None
    candidates: list[str] = field(default_factory=list)  # when only skipped commits remain
    problem: str = ""
    culprit_description: str = ""
    failing_log: str = ""


def worktree_dir(options: BisectOptions) -> Path:
    return options.run.cache_dir / "bisect" / kernelspec.path_key(options.tree) / "worktree"


def _git(runner: CommandRunner, where: Path, *args: str, what: str = "") -> str:
    return runner.run(["git", "-C", str(where), *args], capture=True,
                      what=what or f"git {args[0]}").strip()


def _bisect_command(runner: CommandRunner, worktree: Path, *args: str) -> StepResult:
    """git bisect ARGS; it exits non-zero when only skipped commits are left, so its status is
    printed after its output and read from there."""
    script = 'git -C "$0" bisect "$@" 2>&1; echo "exit status $?"'
    output = runner.run(["sh", "-c", script, str(worktree), *args], capture=True,
                        what=f"git bisect {args[0]}")
    if runner.dry_run:
        return Stuck("dry run")
    return parse_step(output)


def check(options: BisectOptions) -> None:
    if not options.tree.is_dir():
        raise UsageError(f"--tree {options.tree} is not a directory",
                         "give the git repository to bisect")
    if options.run.kernel is None and not is_kernel_tree(options.tree) \
            and options.run.test_hmm_source is None:
        raise UsageError(f"--tree {options.tree} is not a kernel source tree, and neither "
                         "--kernel nor --test-hmm-source was given",
                         "bisect a kernel tree, or point --test-hmm-source into the tree (and "
                         "--kernel at the kernel to test, the default Debian one otherwise)")


def is_kernel_tree(path: Path) -> bool:
    return all(m in kernelspec.probe(path).present for m in kernelspec.TREE_MARKERS)


def _step_options(options: BisectOptions, worktree: Path, commit: str) -> run.RunOptions:
    base = options.run
    source = base.test_hmm_source
    kernel = base.kernel or (str(worktree) if is_kernel_tree(options.tree) else None)
    return replace(base, kernel=kernel,
                   test_hmm_source=inside_worktree(source, options.tree, worktree)
                   if source else None,
                   results_dir=base.results_dir / "steps" / commit[:12])


def _run_step(options: run.RunOptions, runner: CommandRunner,
              progress: Progress) -> tuple[RunReport | None, str]:
    try:
        report = run.run(options, runner, progress)
    except HarnessError as error:
        progress.say(f"skip: {error.problem}")
        return None, error.problem
    progress.say(summary(report))
    return report, ""


def failing_log(report: RunReport) -> str:
    """The message and kernel log of every test that did not pass."""
    parts = []
    for test in report.tests:
        if test.outcome in PASSING:
            continue
        parts.append(f"--- {test.outcome}: {test.nodeid}")
        if test.message.strip():
            parts.append(test.message.rstrip())
        if test.kernel_log:
            parts.append("kernel log while it ran:")
            parts += [f"  {line}" for line in test.kernel_log]
    parts += [f"--- kernel error outside any test: {e}" for e in report.session_kernel_errors]
    parts += [f"--- problem: {p}" for p in report.problems]
    return "\n".join(parts)


def bisect(options: BisectOptions, runner: CommandRunner, progress: Progress) -> BisectReport:
    check(options)
    require_tool("git", "git")
    tree = options.tree.resolve()
    good = _git(runner, tree, "rev-parse", "--verify", f"{options.good}^{{commit}}",
                what=f"resolving --good {options.good}") or options.good
    bad = _git(runner, tree, "rev-parse", "--verify", f"{options.bad}^{{commit}}",
               what=f"resolving --bad {options.bad}") or options.bad
    shutil.rmtree(options.run.results_dir / "steps", ignore_errors=True)
    worktree = worktree_dir(options)
    if worktree.exists():
        runner.run(["git", "-C", str(tree), "worktree", "remove", "--force", str(worktree)],
                   what="removing the worktree an earlier bisection left")
        shutil.rmtree(worktree, ignore_errors=True)
    runner.run(["git", "-C", str(tree), "worktree", "prune"])
    worktree.parent.mkdir(parents=True, exist_ok=True)
    runner.run(["git", "-C", str(tree), "worktree", "add", "--detach", str(worktree), bad],
               what="making a worktree to bisect in")
    report = BisectReport()
    reports: dict[str, RunReport] = {}
    try:
        state = _bisect_command(runner, worktree, "start", bad, good)
        if runner.dry_run:
            runner.announce(f"# each step, at the commit git bisect checks out in {worktree} "
                            f"(shown here with {tree} in its place):")
            _run_step(_step_options(options, tree, "<commit>"), runner, progress)
            return report
        while isinstance(state, Next):
            commit = state.commit
            subject = _git(runner, worktree, "log", "-1", "--format=%s", commit)
            progress.say(f"bisect step {len(report.steps) + 1}: {commit[:12]} {subject}")
            step_options = _step_options(options, worktree, commit)
            outcome, problem = _run_step(step_options, runner, progress)
            decision = verdict(outcome)
            if outcome is not None:
                reports[commit] = outcome
            report.steps.append(Step(commit, subject, decision, str(step_options.results_dir),
                                     problem, [t.nodeid for t in (outcome.tests if outcome
                                                                  else [])
                                               if t.outcome not in PASSING]))
            progress.say(f"{commit[:12]} is {decision}")
            state = _bisect_command(runner, worktree, decision)
        log = _git(runner, worktree, "bisect", "log")
        options.run.results_dir.mkdir(parents=True, exist_ok=True)
        (options.run.results_dir / "bisect-log.txt").write_text(log + "\n")
        if isinstance(state, Found):
            report.culprit = state.commit
            report.culprit_description = _git(runner, worktree, "show", "--stat",
                                              "--format=commit %H%nAuthor: %an <%ae>%nDate:   "
                                              "%ad%n%n    %s%n", state.commit)
            culprit_report = reports.get(state.commit)
            if culprit_report is None:  # the --bad end itself, never run by the bisection
                _git(runner, worktree, "checkout", "--quiet", "--detach", state.commit)
                culprit_report, problem = _run_step(
                    _step_options(options, worktree, state.commit), runner, progress)
                report.problem = problem
            if culprit_report is not None:
                report.failing_log = failing_log(culprit_report)
        elif isinstance(state, Ambiguous):
            report.candidates = list(state.commits)
            report.problem = ("only commits the harness could not build, boot or run are left "
                              "(skipped): the first bad commit is one of "
                              + ", ".join(c[:12] for c in state.commits))
        else:
            report.problem = f"git bisect stopped: {state.message}"
    finally:
        if not runner.dry_run:
            _cleanup(runner, tree, worktree)
    (options.run.results_dir / "bisect.json").write_text(json.dumps(asdict(report), indent=2)
                                                         + "\n")
    return report


def _cleanup(runner: CommandRunner, tree: Path, worktree: Path) -> None:
    for argv, what in ((["git", "-C", str(worktree), "bisect", "reset"], "ending the bisection"),
                       (["git", "-C", str(tree), "worktree", "remove", "--force", str(worktree)],
                        "removing the bisection's worktree")):
        try:
            runner.run(argv, capture=True, what=what)
        except CommandFailedError as error:
            runner.announce(f"# warning: {error.problem}")
    with contextlib.suppress(OSError):
        worktree.parent.rmdir()


def text(report: BisectReport) -> str:
    lines = [f"{s.commit[:12]} {s.verdict:4} {s.subject}"
             + (f"  ({s.problem.splitlines()[0][:100]})" if s.problem else "")
             for s in report.steps]
    if report.culprit:
        lines += ["", f"first bad commit: {report.culprit}", report.culprit_description]
        if report.failing_log:
            lines += ["", "what failed there:", report.failing_log]
    if report.problem:
        lines.append(f"PROBLEM: {report.problem}")
    return "\n".join(lines)
