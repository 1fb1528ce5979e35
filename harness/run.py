"""`harness run`: from a kernel spec to results.json and junit.xml."""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness import (
    bench,
    compare,
    console,
    debian,
    debuginfo,
    exploration,
    guestbuild,
    initramfs,
    kcidb,
    kconfig,
    kernels,
    kernelspec,
    knownissues,
    ktap,
    provision,
    qemu,
    reference,
    results,
    resultsdir,
    rootimage,
    startup,
    vm,
)
from harness.commands import CommandRunner, require_tool
from harness.errors import (
    CommandFailedError,
    GuestSetupError,
    Interrupted,
    KernelNotFoundError,
    LostVMError,
    MissingToolError,
    ResultsDirError,
    UsageError,
)
from harness.guest import protocol, shard
from harness.paths import PROJECT_ROOT
from harness.progress import Progress

MODES = ("private", "coherent", "all")
DEFAULT_SUITES = ("tests/guest",)
# The default --run-timeout of one pass over the selection; --repeat N gets N times it.
RUN_TIMEOUT_PER_REPETITION = 5400
# pytest exit statuses the guest can report, see pytest.ExitCode.
PYTEST_INTERRUPTED, PYTEST_INTERNAL_ERROR, PYTEST_USAGE_ERROR, PYTEST_NO_TESTS = 2, 3, 4, 5


@dataclass(frozen=True)
class RunOptions:
    results_dir: Path
    cache_dir: Path
    kernel: str | None = None
    mode: str = "private"
    keyword: str | None = None
    suites: tuple[str, ...] = DEFAULT_SUITES
    mirror: str = debian.DEFAULT_MIRROR
    qemu: str = "qemu-system-x86_64"
    accel: str = "auto"
    cpus: int = 2
    memory_mib: int | None = None
    test_timeout: int = 600
    run_timeout: int = RUN_TIMEOUT_PER_REPETITION
    module: Path | None = None
    reference: bool = False
    benchmark: bool = False
    extra_kmods: tuple[Path, ...] = ()
    debug_symbols: bool = False
    dry_run: bool = False
    extra_kernel_args: tuple[str, ...] = field(default_factory=tuple)
    modules_dir: Path | None = None  # with a bzImage --kernel
    test_hmm_source: Path | None = None
    debug_kernel: bool = False  # --debug: vm-images/kconfig/debug.config for source trees
    repeat: int = 1  # every selected test this many times, in one boot where possible
    known_issues: tuple[Path, ...] = ()  # the user's files, besides the project's own
    strict_known_issues: bool = False
    baseline: Path | None = None  # an earlier results directory or its results.json
    resume: bool = False  # continue the run in results_dir
    shard: str | None = None  # --shard K/N, checked by validate()
    durations: Path | None = None  # an earlier run's results, to balance the shards
    jobs: int = 1  # shards run as this many guests at once (harness.parallel)
    kcidb_origin: str = "hmm_harness"  # the `origin` of results.kcidb.json
    guest_root: str = "image"  # GUEST_ROOTS: how the guest mounts its root
    seed: int = 0  # the stateful suite's Hypothesis seed (harness.exploration)
    explore: int = exploration.DEFAULT_EXPLORE  # sequences per state machine
    stateful_unsafe: bool = False  # the stateful suite may make calls known to crash
    replay: Path | None = None  # a recorded stateful sequence for replay_recorded.py
    target: str = "qemu"  # TARGETS: a guest, or the running kernel of this machine
    yes_this_host: bool = False  # --target host: the user means this machine
    spm_addrs: tuple[int, ...] = ()  # --target host: test_hmm's coherent chunks, by hand
    bench_pairs: int = 0  # bench --reference: Python and C benchmark tables, in pairs


OPTIONS_FILE = "run-options.json"
# "image": an erofs image of the root on virtio-blk where the kernel and host can, else 9p.
GUEST_ROOTS = ("image", "9p")


def root_image_problem(requested: str, kernel_problem: str | None,
                       mkfs_found: bool) -> str | None:
    """Why this run's guest mounts its root over 9p, or None: from the erofs image."""
    if requested == "9p":
        return "--guest-root 9p"
    if kernel_problem is not None:
        return kernel_problem
    if not mkfs_found:
        return (f"{rootimage.MKFS} is not installed (apt-get install {rootimage.MKFS_PACKAGE}, "
                "or run ci/bootstrap)")
    return None


def validate(options: RunOptions) -> None:
    """Checks that need no download and change nothing, so bad input fails in a second."""
    validate_request(options)
    require_qemu(options.qemu)


def validate_request(options: RunOptions) -> None:
    """validate() but for QEMU on this host: what a LAVA job, run elsewhere, checks too."""
    if options.test_timeout <= 0:
        raise UsageError(f"--test-timeout {options.test_timeout} is not a positive number of "
                         "seconds", "give each test at least a second, e.g. --test-timeout 120")
    kcidb.check_origin(options.kcidb_origin)
    if options.jobs < 1:
        raise UsageError(f"--jobs {options.jobs}: at least one guest runs",
                         "give --jobs 1 or more")
    if options.repeat < 1:
        raise UsageError(f"--repeat {options.repeat}: a selection runs at least once",
                         "give --repeat 1 or more")
    if options.run_timeout <= 0:
        raise UsageError(f"--run-timeout {options.run_timeout} is not a positive number of "
                         "seconds", "leave it out for the default, or give e.g. --run-timeout "
                         f"{RUN_TIMEOUT_PER_REPETITION}")
    if options.repeat > 1 and options.reference:
        raise UsageError("--repeat and --reference do not go together: the C selftest runs "
                         "each case once", "drop one of them")
    exploration.check_explore(options.explore)
    if options.replay is not None and not options.replay.is_file():
        raise UsageError(f"the sequence to replay, {options.replay}, is not a file",
                         "give the sequence.json that 'harness reproduce' wrote")
    if options.shard is not None:
        check_shard(options)
    if options.keyword is not None and (problem := keyword_problem(options.keyword)):
        raise UsageError(f"-k {options.keyword!r} is not a pytest -k expression: {problem}",
                         "write it as pytest -k takes it, e.g. -k 'migrate and not huge'")
    if options.mode not in MODES:
        raise UsageError(f"unknown --mode '{options.mode}'",
                         f"use one of: {', '.join(MODES)}")
    if options.mode != "private" and options.memory_mib and \
            (memory := qemu.coherent_memory_problem(options.memory_mib)):
        raise UsageError(f"--mode {options.mode} with --memory {options.memory_mib}: {memory}",
                         "give the guest more memory (the default for coherent modes is "
                         f"{qemu.DEFAULT_MEMORY_MIB[True]} MiB), or use --mode private")
    if options.accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"unknown --accel '{options.accel}'", "use auto, kvm or tcg")
    if options.guest_root not in GUEST_ROOTS:
        raise UsageError(f"unknown --guest-root '{options.guest_root}'",
                         f"use one of: {', '.join(GUEST_ROOTS)}")
    if options.module is not None and not options.module.is_file():
        raise UsageError(f"--module {options.module} is not a file",
                         "give the path of a built test_hmm.ko, or drop --module")
    request = kernel_request(options)
    kernels.check(request)
    if isinstance(request.spec, kernelspec.ModulesDir):
        check_kernel_dir(request.spec.directory)
    if options.test_hmm_source is not None:
        kernelspec.test_hmm_source(options.test_hmm_source)
    for extra in options.extra_kmods:
        if not (extra / "Makefile").is_file() and not (extra / "Kbuild").is_file():
            raise UsageError(f"--extra-kmod {extra} has no Makefile or Kbuild",
                             "give a directory holding an out-of-tree module (obj-m := ...)")
    for suite in options.suites:
        if not (PROJECT_ROOT / suite).exists():
            raise UsageError(f"suite '{suite}' does not exist under {PROJECT_ROOT}",
                             "name a file or directory under tests/guest")


def check_shard(options: RunOptions) -> None:
    assert options.shard is not None
    try:
        shard.parse(options.shard)
    except ValueError as error:
        raise UsageError(f"--shard {error}", "give --shard K/N with 1 <= K <= N, e.g. "
                         "--shard 1/4 ... --shard 4/4 for four parts") from None
    if options.reference:
        raise UsageError("--shard and --reference do not go together: the C selftest runs "
                         "its cases whole", "run --reference unsharded")
    if options.durations is not None:
        shard_durations(options.durations)


def shard_durations(path: Path) -> dict[str, float]:
    """Seconds per test (without its repetition) in an earlier run's results."""
    data = resultsdir.read(path, "the durations file", "--durations")
    seconds: dict[str, list[float]] = {}
    for test in data["tests"]:
        if test.get("outcome") not in results.UNFINISHED:
            base = protocol.without_repeat(str(test["nodeid"]))
            seconds.setdefault(base, []).append(float(test.get("duration", 0.0)))
    return {base: sum(values) / len(values) for base, values in seconds.items()}


def keyword_problem(expression: str) -> str:
    """Why pytest would refuse this -k expression, or "" (pytest's own parser decides)."""
    from _pytest.mark import expression as grammar

    # pytest 8 raises its own ParseError, pytest 9 a SyntaxError.
    refusals = (SyntaxError, getattr(grammar, "ParseError", SyntaxError))
    try:
        grammar.Expression.compile(expression)
    except refusals as error:
        return str(error.msg if isinstance(error, SyntaxError) else error)
    return ""


def known_issue_files(options: RunOptions) -> tuple[Path, ...]:
    return (knownissues.PROJECT_FILE, *options.known_issues)


def save_options(options: RunOptions) -> None:
    """What --resume needs to continue this run as it was started."""
    data = {f.name: getattr(options, f.name) for f in fields(options)}
    (options.results_dir / OPTIONS_FILE).write_text(json.dumps(data, indent=2, default=str))


def load_options(results_dir: Path) -> RunOptions:
    path = results_dir / OPTIONS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--resume {results_dir}: no run to continue there ({path} cannot "
                         "be read)", "give --resume the results directory of a run this "
                         "harness started") from error
    paths = {"results_dir", "cache_dir", "module", "modules_dir", "test_hmm_source",
             "baseline", "durations", "replay"}
    values: dict[str, Any] = {}
    for f in fields(RunOptions):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in paths:
            value = Path(value) if value is not None else None
        elif f.name in ("extra_kmods", "known_issues"):
            value = tuple(Path(v) for v in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return RunOptions(**values | {"results_dir": results_dir, "resume": True})


def previous_results(results_dir: Path) -> results.RunReport | None:
    """The results a --resume continues, with known failures back to what happened."""
    try:
        data = json.loads((results_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    report = results.from_json(data)
    for test in report.tests:
        if test.outcome == knownissues.KNOWN_FAILURE:
            test.outcome = test.actual_outcome
        test.actual_outcome = test.known_issue = test.known_issue_id = ""
        test.known_issue_state = ""
    return report


def require_qemu(qemu_binary: str) -> None:
    if os.sep not in qemu_binary:
        require_tool(qemu_binary, "qemu-system-x86")
    elif not os.access(qemu_binary, os.X_OK):
        raise MissingToolError(f"QEMU '{qemu_binary}' does not exist or is not executable",
                               "install qemu-system-x86 (apt-get install qemu-system-x86) or "
                               "pass --qemu with the path of qemu-system-x86_64")


def prepare_results_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "guest").mkdir(exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ResultsDirError(f"cannot write the results directory {path}: {error.strerror}",
                              "pass --results with a directory you can write") from error


def kernel_request(options: RunOptions) -> kernels.KernelRequest:
    spec = kernelspec.spec_from_text(options.kernel, options.modules_dir) if options.kernel \
        else kernelspec.DebianKernel(debian.DEFAULT_KERNEL)
    return kernels.KernelRequest(spec, options.cache_dir, options.mirror, options.debug_kernel,
                                 options.module)


def resolve_kernel(options: RunOptions, runner: CommandRunner,
                   built: provision.Kernel | None = None) -> provision.Provisioned:
    return kernels.resolve(kernel_request(options), runner, built)


def check_kernel_dir(path: Path) -> None:
    """A directory laid out like /usr/lib/modules/RELEASE of a Debian kernel package:
    vmlinuz, config and the modules."""
    if not path.exists():
        raise KernelNotFoundError(f"--kernel {path} does not exist",
                                  "give an existing kernel directory, or a Debian release or "
                                  "suite such as sid")
    image, config = path / "vmlinuz", path / "config"
    if not (image.is_file() and config.is_file()):
        raise KernelNotFoundError(
            f"--kernel {path} has no vmlinuz and config beside each other",
            "point --kernel at a directory like /usr/lib/modules/RELEASE of a Debian kernel "
            "package (vmlinuz, config, kernel/ modules)")
    kconfig.require(kconfig.parse(config.read_text()), f"in {path}")


SHARD_KEEP_FILE = "shard-tests.json"
SHARD_DURATIONS_FILE = "shard-durations.json"
REPLAY_FILE = "replay.json"


def shard_files(options: RunOptions, order: list[str]) -> dict[str, Any]:
    """What a shard's boot reads besides the plan, by file name: on its first boot the shard
    to cut (and the durations to balance it by); on later boots, and on a --resume, the tests
    the first boot reported as the shard's, so a crash cannot move tests between shards."""
    if options.shard is None:
        return {}
    if order:
        return {SHARD_KEEP_FILE: order}
    return {SHARD_DURATIONS_FILE: shard_durations(options.durations)} if options.durations \
        else {}


def write_plan(options: RunOptions, layout: qemu.GuestLayout, round_number: int,
               deselect: list[str], order: list[str]) -> None:
    guest_dir = options.results_dir / "guest"
    files = shard_files(options, order)
    if options.replay is not None:
        files[REPLAY_FILE] = json.loads(options.replay.read_text())
    for name, content in files.items():
        (guest_dir / name).write_text(json.dumps(content))
    plan = {"mode": options.mode, "keyword": options.keyword, "suites": list(options.suites),
            "module_params": list(layout.module_params), "test_timeout": options.test_timeout,
            "round": round_number, "deselect": deselect, "reference": options.reference,
            "repeat": options.repeat, "shard": options.shard,
            "seed": options.seed, "explore": options.explore,
            "stateful_unsafe": options.stateful_unsafe, "bench_pairs": options.bench_pairs,
            "replay": REPLAY_FILE if options.replay is not None else None,
            "keep": SHARD_KEEP_FILE if SHARD_KEEP_FILE in files else None,
            "durations": SHARD_DURATIONS_FILE if SHARD_DURATIONS_FILE in files else None}
    (guest_dir / "plan.json").write_text(json.dumps(plan, indent=2))


@dataclass(frozen=True)
class Prepared:
    """Everything a boot needs, built or found in the cache."""

    kernel: provision.Kernel
    root: Path
    build: guestbuild.GuestBuild
    debug: debuginfo.DebugInfo
    accel: vm.AccelChoice
    options_set: dict[str, str]
    root_image: Path | None = None  # None: the root is the "sysroot" 9p share


def prepare(options: RunOptions, runner: CommandRunner, progress: Progress) -> Prepared:
    """The kernel, the guest root, test_hmm and the guest's userspace, ready to boot."""
    # A kernel tree builds for minutes under its own lock, not the whole cache's.
    built = kernels.build_tree(kernel_request(options), runner)
    with provision.cache_lock(options.cache_dir):
        provisioned = resolve_kernel(options, runner, built)
        kernel = provisioned.kernel
        options_set = kconfig.parse(kernel.config.read_text()) if not runner.dry_run else {}
        if not runner.dry_run:
            kconfig.require(options_set, kernel.origin)
        build = guestbuild.build_for_guest(
            kernel, provisioned.root, options.cache_dir, runner, options.module,
            options.extra_kmods, kernelspec.test_hmm_source(options.test_hmm_source)
            if options.test_hmm_source else None)
        debug = debuginfo.locate(kernel, provisioned.root, build.directory, options.extra_kmods,
                                 options.cache_dir, options.mirror, options.debug_symbols, runner)
    try:
        runner.run(guestbuild.precompile_argv(provisioned.root, build.directory,
                                              options.suites),
                   capture=True, what="precompiling the guest suites")
    except CommandFailedError as error:
        # Only a speed-up: the guest collects again and reports any real problem itself.
        progress.say(f"precompiling the suites failed, the guest will compile them: "
                     f"{error.problem.splitlines()[-1]}")
    # After precompiling, which writes pytest's rewritten plugins into the root.
    image = guest_root_image(options, kernel, provisioned.root, options_set, runner, progress)
    accel = vm.choose_accel(options.accel, options.qemu, kernel.image, options.cache_dir, runner)
    progress.say(f"kernel: {kernel.origin}; accelerator: {accel.accel} ({accel.reason})")
    return Prepared(kernel, provisioned.root, build, debug, accel, options_set, image)


def guest_root_image(options: RunOptions, kernel: provision.Kernel, root: Path,
                     options_set: dict[str, str], runner: CommandRunner,
                     progress: Progress) -> Path | None:
    if runner.dry_run:
        kernel_problem = None
    else:
        kernel_problem = initramfs.block_root_problem(
            options_set, initramfs.read_dependencies(kernel.modules_dir))
    mkfs = rootimage.mkfs_program()
    problem = root_image_problem(options.guest_root, kernel_problem, mkfs is not None)
    if problem is not None or mkfs is None:
        if options.guest_root != "9p":
            progress.say(f"the guest root is served over 9p: {problem}")
        return None
    with provision.cache_lock(options.cache_dir):
        return rootimage.ensure_image(root, mkfs, runner)


class NextBoot(StrEnum):
    RETRY = "retry"  # the same boot again: it died before user space
    CONTINUE = "continue"  # a fresh guest for the tests still to run
    STOP = "stop"


def next_boot(reached_user_space: bool, timed_out: bool, early_deaths_in_a_row: int,
              remaining: int, progressed: bool) -> NextBoot:
    """What to do after a guest ended. Under TCG a boot very rarely dies or stalls before
    user space (seen: an int3 Oops in the scheduler while devtmpfs starts, and a boot silent
    for 300 s, each once in 39 boots of one long run): one more boot tells such a flake from
    a kernel that cannot boot, which fails twice in a row."""
    if not reached_user_space and not timed_out and early_deaths_in_a_row == 0:
        return NextBoot.RETRY
    if reached_user_space and remaining and progressed and not timed_out:
        return NextBoot.CONTINUE
    return NextBoot.STOP


def run(options: RunOptions, runner: CommandRunner, progress: Progress) -> results.RunReport:
    started = time.monotonic()
    validate(options)
    issues = knownissues.load(known_issue_files(options))
    baseline = compare.load_outcomes(options.baseline) if options.baseline else None
    previous = previous_results(options.results_dir) if options.resume else None
    prepare_results_dir(options.results_dir)
    if previous is None:
        clean_results(options.results_dir)
    save_options(options)
    runner.announce(f"# stateful suite: seed {options.seed}, {options.explore} sequences a "
                    f"machine (repeat with --seed {options.seed})")
    prepared = prepare(options, runner, progress)
    layout = qemu.guest_layout(coherent=options.mode != "private",
                               memory_mib=options.memory_mib)
    session = Session(options, prepared, layout, issues, baseline, progress, previous)
    if runner.dry_run:
        write_plan(options, layout, 1, [], [])
        vm.boot(session.vm_spec(1), runner, options.run_timeout, options.test_timeout,
                progress.on_event)
        return session.report
    try:
        session.boot_until_done(runner, started)
    except Interrupted as stop:
        session.stop(stop.signal_name)
        stop.report = session.report
        raise
    finally:
        shutil.rmtree(session.monitor_dir, ignore_errors=True)
    return session.finish(runner, started)


class Session:
    """The boots of one run and what they reported so far, written to the results directory
    after every test so that a killed harness loses nothing finished."""

    def __init__(self, options: RunOptions, prepared: Prepared, layout: qemu.GuestLayout,
                 issues: list[knownissues.KnownIssue], baseline: dict[str, str] | None,
                 progress: Progress, previous: results.RunReport | None) -> None:
        self.options, self.prepared, self.layout = options, prepared, layout
        self.issues, self.baseline, self.progress = issues, baseline, progress
        kernel = prepared.kernel
        self.kernel_facts = knownissues.KernelFacts(kernel.release, kernel.origin,
                                                    prepared.options_set)
        self.report = results.RunReport(
            tests=[], kernel={"release": kernel.release, "origin": kernel.origin,
                              "image": str(kernel.image)},
            kconfig=kconfig.checked_values(prepared.options_set),
            accelerator=prepared.accel.accel, mode=options.mode,
            strict_known_issues=options.strict_known_issues,
            baseline=str(options.baseline or ""), kcidb_origin=options.kcidb_origin,
            started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            exploration={"seed": options.seed, "explore": options.explore})
        self.order: list[str] = []
        self.rounds: list[list[results.TestOutcome]] = []
        if previous is not None:
            self.order = [t.nodeid for t in previous.tests + previous.c_selftest]
            self.rounds = [[t for t in previous.tests + previous.c_selftest
                            if t.outcome not in results.UNFINISHED]]
            self.report.boots = previous.boots
            self.report.session_kernel_errors = previous.session_kernel_errors
            self.report.session_kernel_log = previous.session_kernel_log
            self.report.measurements = previous.measurements
            self.report.shard = previous.shard
            self.report.started_at = previous.started_at or self.report.started_at
            self.report.startup = previous.startup
        self.early_deaths: list[Path] = []
        self.early_deaths_in_a_row = 0
        self.monitor_dir = Path(tempfile.mkdtemp(prefix="hmm-harness-"))
        self.current_events: list[dict[str, Any]] = []
        self.current_console: Path | None = None

    def vm_spec(self, boot_number: int) -> qemu.VmSpec:
        return guest_vm_spec(self.options, self.prepared, self.layout,
                             self.monitor_dir / "monitor.sock",
                             "" if boot_number == 1 else f"-{boot_number}")

    def on_event(self, event: dict[str, Any]) -> None:
        self.progress.on_event(event)
        self.current_events.append(event)
        if event.get("event") == "collected":
            self.order += [n for n in event["nodeids"] if n not in self.order]
            if "selection" in event:
                self.report.shard = {"shard": event["shard"], "selection": event["selection"]}
        if event.get("event") in ("collected", "test-result"):
            self.checkpoint()

    def boot_until_done(self, runner: CommandRunner, started: float) -> None:
        options = self.options
        if self.order and not results.still_to_run(self.order, self.rounds):
            return  # a --resume of a run that had finished every test
        first_boot_of_run = not self.order
        while True:
            number = self.report.boots + 1
            deselect = [t.nodeid for outcomes in self.rounds for t in outcomes
                        if t.outcome not in results.UNFINISHED]
            write_plan(options, self.layout, number, deselect, self.order)
            spec = self.vm_spec(number)
            self.current_events, self.current_console = [], spec.console_log
            self.report.boots = number  # before it ends: a --resume must not reuse its files
            guest = vm.boot(spec, runner, options.run_timeout - (time.monotonic() - started),
                            options.test_timeout, self.on_event)
            self.current_console = None
            reached = any(e["event"] == "guest-started" for e in guest.events)
            if reached and not self.report.startup:
                self.report.startup = startup.timeline(guest.events, guest.arrivals,
                                                       guest.qemu_started, guest.qemu_ended)
                self.report.startup["run_started"] = started
            if not reached and next_boot(reached, guest.timed_out, self.early_deaths_in_a_row,
                                         0, False) is NextBoot.RETRY:
                self.early_deaths_in_a_row += 1
                self.early_deaths.append(spec.console_log.rename(
                    spec.console_log.with_name(f"console-early-death-{number}.log")))
                how = "was stuck" if guest.hung_reason else "died"
                self.progress.say(f"the guest {how} before reaching user space; booting once "
                                  f"more (console kept in {self.early_deaths[-1].name})")
                continue
            self.report.measurements += [e for e in guest.events
                                         if e["event"] == "measurement"]
            outcomes, collected = round_outcomes(guest, spec.console_log, options, self.report,
                                                 first=first_boot_of_run)
            first_boot_of_run = False
            self.order += [nodeid for nodeid in collected if nodeid not in self.order]
            self.rounds.append(outcomes)
            remaining = results.still_to_run(self.order, self.rounds)
            progressed = any(t.outcome not in results.UNFINISHED for t in outcomes)
            self.checkpoint()
            if reached:
                self.early_deaths_in_a_row = 0
            if next_boot(reached, guest.timed_out, self.early_deaths_in_a_row, len(remaining),
                         progressed) is not NextBoot.CONTINUE:
                return
            broken = ", ".join(f"{t.outcome}: {t.nodeid}" for t in outcomes
                               if t.outcome in ("crashed", "hung"))
            self.progress.say(f"{broken or 'the guest died between tests'}; booting a fresh "
                              f"guest for the {len(remaining)} remaining tests")

    def outcomes_so_far(self, in_progress: str) -> list[results.TestOutcome]:
        rounds = list(self.rounds)
        if self.current_console is not None and self.current_events:
            text = self.current_console.read_text(errors="replace") \
                if self.current_console.exists() else ""
            rounds.append(results.merge(self.current_events, console.parse(text),
                                        in_progress=in_progress))
        return results.combine(self.order, rounds)

    def assemble(self, outcomes: list[results.TestOutcome]) -> None:
        """Known issues, repetitions and the baseline, applied to a copy of the outcomes."""
        tests, self.report.c_selftest = reference.split(copy.deepcopy(outcomes))
        judge(self.report, tests, self.issues, self.kernel_facts, self.options.repeat,
              self.baseline)

    def checkpoint(self) -> None:
        self.assemble(self.outcomes_so_far(in_progress="not-run"))
        write_reports(self.report, self.options.results_dir)

    def stop(self, signal_name: str) -> None:
        self.report.interrupted = signal_name
        self.assemble(self.outcomes_so_far(in_progress="interrupted"))
        write_reports(self.report, self.options.results_dir)

    def finish(self, runner: CommandRunner, started: float) -> results.RunReport:
        report, options = self.report, self.options
        self.assemble(results.combine(self.order, self.rounds))
        debuginfo.decode(report.tests, self.prepared.debug, runner)
        report.symbols = self.prepared.debug.describe()
        if options.reference:
            rows = reference.compare(report.tests, report.c_selftest)
            report.reference = [asdict(row) | {"agree": row.agree} for row in rows]
            self.progress.say("the kernel's C selftest beside the Python suites, same guest:\n"
                              + reference.table(rows))
        if options.benchmark:
            variants = [m for m in ("private", "coherent") if options.mode in (m, "all")]
            text, report.benchmark = bench.summarize(report.measurements, report.c_selftest,
                                                     variants)
            self.progress.say(text)
        if self.baseline is not None:
            self.progress.say(baseline_table(options, report))
        report.wall_seconds = time.monotonic() - started
        report.finished = True
        write_reports(report, options.results_dir)
        return report


def guest_vm_spec(options: RunOptions, prepared: Prepared, layout: qemu.GuestLayout,
                  monitor_socket: Path, suffix: str = "",
                  extra_kernel_args: tuple[str, ...] = ()) -> qemu.VmSpec:
    """The harness's guest: its kernel, root, shares and machine; `suffix` names the logs of
    a later boot."""
    root_share = () if prepared.root_image else (qemu.Share("sysroot", prepared.root),)
    root_arg = ("hmm_root=erofs",) if prepared.root_image else ()
    return qemu.VmSpec(
        qemu=options.qemu, accel=prepared.accel.accel, cpus=options.cpus,
        memory_mib=layout.memory_mib, kernel_image=prepared.kernel.image,
        initramfs=prepared.build.initramfs,
        kernel_args=(*qemu.BASE_KERNEL_ARGS, *layout.kernel_args, *prepared.kernel.boot_args,
                     *root_arg, *options.extra_kernel_args, *extra_kernel_args),
        shares=(*root_share,
                qemu.Share("project", PROJECT_ROOT),
                qemu.Share("build", prepared.build.directory),
                qemu.Share("results", options.results_dir / "guest", read_only=False)),
        console_log=options.results_dir / f"console{suffix}.log",
        events_log=options.results_dir / f"events{suffix}.jsonl",
        monitor_socket=monitor_socket, root_image=prepared.root_image,
        firmware=qemu.direct_boot_firmware())


def judge(report: results.RunReport, tests: list[results.TestOutcome],
          issues: list[knownissues.KnownIssue], kernel: knownissues.KernelFacts, repeat: int,
          baseline: dict[str, str] | None) -> None:
    """The report's tests, with the verdicts of the known issues, the repetitions and the
    baseline: one judgement, whichever target ran them."""
    report.tests = tests
    knownissues.apply(report.tests, issues, kernel)
    if repeat > 1:
        report.repeats, report.flaky = results.repetitions(report.tests)
    if baseline is not None:
        report.baseline_changes = compare.changes(baseline, report.tests)


def baseline_table(options: RunOptions, report: results.RunReport) -> str:
    return (f"compared with the baseline {options.baseline}:\n"
            + compare.table([compare.Row(**c) for c in report.baseline_changes]))


def round_outcomes(guest: vm.GuestRun, console_log: Path, options: RunOptions,
                   report: results.RunReport, first: bool) -> tuple[list[results.TestOutcome],
                                                                    list[str]]:
    """Outcomes of one boot, and the tests it collected. Errors that leave no test to
    report (a guest that never got to the tests) raise, but only on the first boot."""
    text = console_log.read_text(errors="replace") if console_log.exists() else ""
    log = console.parse(text)
    events = guest.events
    kinds = {e["event"] for e in events}
    exit_event = next((e for e in events if e["event"] == "guest-exit"), None)
    setup_error = next((e for e in events if e["event"] == "setup-error"), None)
    tail = "\n".join(text.splitlines()[-40:])
    suffix = console_log.stem.removeprefix("console")
    output_log = options.results_dir / "guest" / f"pytest-output{suffix}.log"
    output_tail = "\n".join(output_log.read_text(errors="replace").splitlines()[-25:]) \
        if output_log.exists() else "(no pytest output)"
    status = exit_event["status"] if exit_event else None
    if setup_error:
        raise GuestSetupError(f"the guest could not set up test_hmm: {setup_error['message']}",
                              f"see {console_log} for the kernel log")
    if status == PYTEST_NO_TESTS and first:
        raise UsageError(f"no test matched -k {options.keyword!r} in "
                         f"{' '.join(options.suites)}", "check the -k expression")
    interrupted = status == PYTEST_INTERRUPTED and "test-result" not in kinds
    if status in (PYTEST_INTERNAL_ERROR, PYTEST_USAGE_ERROR) or interrupted:
        raise GuestSetupError(f"pytest in the guest stopped with exit status {status}:\n"
                              f"{output_tail}", f"see {output_log}")
    if "collected" not in kinds:
        guest_error = next((e for e in events if e["event"] == "guest-error"), None)
        stuck = f"{guest.hung_reason}; " if guest.hung_reason else ""
        detail = guest_error["message"] if guest_error else f"{stuck}console tail:\n{tail}"
        raise LostVMError(
            f"the guest ended before any test was collected "
            f"(QEMU exit {guest.returncode}{', timed out' if guest.timed_out else ''}): "
            f"{detail}", f"see {console_log} and {output_log}")
    # pytest reports its collection, then the C selftest runner (with --reference) its own.
    collected = [n for e in events if e["event"] == "collected" for n in e["nodeids"]]
    session_errors = console.distinct(console.kernel_errors(log.session_lines))
    report.session_kernel_errors += [e for e in session_errors
                                     if e not in report.session_kernel_errors]
    if first:
        report.session_kernel_log = log.session_lines[-300:]
    report.guest_status = status
    if guest.timed_out:
        report.problems.append(f"the whole run outlived --run-timeout {options.run_timeout}s; "
                               f"the guest was killed (console: {console_log.name})")
    return results.merge(events, log, guest.hung_nodeid, guest.hung_reason), collected


def write_reports(report: results.RunReport, results_dir: Path) -> None:
    """Each file is replaced whole, so a reader (or a killed harness) never sees half a
    file."""
    write_atomically(results_dir / "results.json", json.dumps(results.to_json(report),
                                                              indent=2))
    write_atomically(results_dir / "junit.xml", results.to_junit(report))
    write_atomically(results_dir / "results.ktap", ktap.to_ktap(report))
    write_atomically(results_dir / "results.kcidb.json",
                     json.dumps(kcidb.to_kcidb(report), indent=2))


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def clean_results(results_dir: Path) -> None:
    """Results of an earlier run in the same directory must not pass for this run's."""
    for pattern in ("results.json", "junit.xml", "results.ktap", "results.kcidb.json",
                    "console*.log",
                    "events*.jsonl", OPTIONS_FILE):
        for path in results_dir.glob(pattern):
            path.unlink()
    shutil.rmtree(results_dir / "guest", ignore_errors=True)
    (results_dir / "guest").mkdir()
