"""`harness run`: from a kernel spec to results.json and junit.xml."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    bench,
    console,
    debian,
    debuginfo,
    guestbuild,
    kconfig,
    kernels,
    kernelspec,
    ktap,
    provision,
    qemu,
    reference,
    results,
    vm,
)
from harness.commands import CommandRunner, require_tool
from harness.errors import (
    CommandFailedError,
    GuestSetupError,
    KernelNotFoundError,
    LostVMError,
    MissingToolError,
    ResultsDirError,
    UsageError,
)
from harness.paths import PROJECT_ROOT
from harness.progress import Progress

MODES = ("private", "coherent", "all")
DEFAULT_SUITES = ("tests/guest",)
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
    run_timeout: int = 5400
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


def validate(options: RunOptions) -> None:
    """Checks that need no download, so bad input fails in a second."""
    if options.mode not in MODES:
        raise UsageError(f"unknown --mode '{options.mode}'",
                         f"use one of: {', '.join(MODES)}")
    if options.mode != "private" and options.memory_mib and \
            (problem := qemu.coherent_memory_problem(options.memory_mib)):
        raise UsageError(f"--mode {options.mode} with --memory {options.memory_mib}: {problem}",
                         "give the guest more memory (the default for coherent modes is "
                         f"{qemu.DEFAULT_MEMORY_MIB[True]} MiB), or use --mode private")
    if options.accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"unknown --accel '{options.accel}'", "use auto, kvm or tcg")
    prepare_results_dir(options.results_dir)
    clean_results(options.results_dir)
    require_qemu(options.qemu)
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


def write_plan(options: RunOptions, layout: qemu.GuestLayout, round_number: int,
               deselect: list[str]) -> None:
    plan = {"mode": options.mode, "keyword": options.keyword, "suites": list(options.suites),
            "module_params": list(layout.module_params), "test_timeout": options.test_timeout,
            "round": round_number, "deselect": deselect, "reference": options.reference}
    (options.results_dir / "guest" / "plan.json").write_text(json.dumps(plan, indent=2))


def run(options: RunOptions, runner: CommandRunner, progress: Progress) -> results.RunReport:
    started = time.monotonic()
    validate(options)
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
    accel = vm.choose_accel(options.accel, options.qemu, kernel.image, options.cache_dir, runner)
    progress.say(f"kernel: {kernel.origin}; accelerator: {accel.accel} ({accel.reason})")
    layout = qemu.guest_layout(coherent=options.mode != "private",
                               memory_mib=options.memory_mib)
    monitor_dir = Path(tempfile.mkdtemp(prefix="hmm-harness-"))

    def vm_spec(round_number: int) -> qemu.VmSpec:
        suffix = "" if round_number == 1 else f"-{round_number}"
        return qemu.VmSpec(
            qemu=options.qemu, accel=accel.accel, cpus=options.cpus,
            memory_mib=layout.memory_mib, kernel_image=kernel.image, initramfs=build.initramfs,
            kernel_args=(*qemu.BASE_KERNEL_ARGS, *layout.kernel_args, *kernel.boot_args,
                         *options.extra_kernel_args),
            shares=(qemu.Share("sysroot", provisioned.root),
                    qemu.Share("project", PROJECT_ROOT),
                    qemu.Share("build", build.directory),
                    qemu.Share("results", options.results_dir / "guest", read_only=False)),
            console_log=options.results_dir / f"console{suffix}.log",
            events_log=options.results_dir / f"events{suffix}.jsonl",
            monitor_socket=monitor_dir / "monitor.sock")

    if runner.dry_run:
        write_plan(options, layout, 1, [])
        vm.boot(vm_spec(1), runner, options.run_timeout, options.test_timeout, progress.on_event)
        return results.RunReport(tests=[], kernel={"release": kernel.release}, kconfig={},
                                 accelerator=accel.accel, mode=options.mode)
    report = results.RunReport(
        tests=[], kernel={"release": kernel.release, "origin": kernel.origin,
                          "image": str(kernel.image)},
        kconfig=kconfig.checked_values(options_set), accelerator=accel.accel, mode=options.mode)
    order: list[str] = []
    rounds: list[list[results.TestOutcome]] = []
    early_deaths: list[Path] = []
    try:
        while True:
            number = len(rounds) + 1
            deselect = [t.nodeid for outcomes in rounds for t in outcomes
                        if t.outcome != "not-run"]
            write_plan(options, layout, number, deselect)
            spec = vm_spec(number)
            guest = vm.boot(spec, runner, options.run_timeout - (time.monotonic() - started),
                            options.test_timeout, progress.on_event)
            if not any(e["event"] == "guest-started" for e in guest.events) \
                    and not guest.timed_out and not early_deaths:
                # Under TCG a boot very rarely dies before user space (seen: an int3 Oops
                # while unpacking the initramfs). One more boot tells a flake from a kernel
                # that cannot boot; the dead boot's console is kept.
                early_deaths.append(spec.console_log.rename(
                    spec.console_log.with_name(f"console-early-death-{number}.log")))
                progress.say(f"the guest died before reaching user space; booting once more "
                             f"(console kept in {early_deaths[-1].name})")
                continue
            report.measurements += [e for e in guest.events if e["event"] == "measurement"]
            outcomes, collected = round_outcomes(guest, spec.console_log, options, report,
                                                 first=number == 1)
            order += [nodeid for nodeid in collected if nodeid not in order]
            rounds.append(outcomes)
            remaining = results.still_to_run(order, rounds)
            progressed = any(t.outcome != "not-run" for t in outcomes)
            if not remaining or guest.timed_out or not progressed:
                break
            broken = ", ".join(f"{t.outcome}: {t.nodeid}" for t in outcomes
                               if t.outcome in ("crashed", "hung"))
            progress.say(f"{broken or 'the guest died between tests'}; booting a fresh guest "
                         f"for the {len(remaining)} remaining tests")
    finally:
        shutil.rmtree(monitor_dir, ignore_errors=True)
    report.tests, report.c_selftest = reference.split(results.combine(order, rounds))
    debuginfo.decode(report.tests, debug, runner)
    report.symbols = debug.describe()
    if options.reference:
        rows = reference.compare(report.tests, report.c_selftest)
        report.reference = [asdict(row) | {"agree": row.agree} for row in rows]
        progress.say("the kernel's C selftest beside the Python suites, same guest:\n"
                     + reference.table(rows))
    if options.benchmark:
        variants = [m for m in ("private", "coherent") if options.mode in (m, "all")]
        text, report.benchmark = bench.summarize(report.measurements, report.c_selftest,
                                                 variants)
        progress.say(text)
    report.wall_seconds = time.monotonic() - started
    write_reports(report, options.results_dir)
    return report


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
        detail = guest_error["message"] if guest_error else f"console tail:\n{tail}"
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
    return results.merge(events, log, guest.hung_nodeid), collected


def write_reports(report: results.RunReport, results_dir: Path) -> None:
    (results_dir / "results.json").write_text(json.dumps(results.to_json(report), indent=2))
    (results_dir / "junit.xml").write_text(results.to_junit(report))
    (results_dir / "results.ktap").write_text(ktap.to_ktap(report))


def clean_results(results_dir: Path) -> None:
    """Results of an earlier run in the same directory must not pass for this run's."""
    for pattern in ("results.json", "junit.xml", "results.ktap", "console*.log", "events*.jsonl"):
        for path in results_dir.glob(pattern):
            path.unlink()
    shutil.rmtree(results_dir / "guest", ignore_errors=True)
    (results_dir / "guest").mkdir()
