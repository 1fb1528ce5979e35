"""--target host: the suites on the running kernel of the machine the harness runs on.

The same suites, plugin and reports as in a guest. What a guest's boot provides comes from
the machine instead: test_hmm is built against /lib/modules/$(uname -r)/build with the
kernel's own compiler and loaded here; the kernel log is read live from /dev/kmsg; the
plugin's events go to a file. Both files are fsynced as they grow, so what finished is on
disk if a kernel bug takes the machine down.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import (
    compare,
    console,
    hostcheck,
    hostfacts,
    kconfig,
    kernelspec,
    kmodext,
    knownissues,
    results,
    run,
    vm,
)
from harness.commands import CommandRunner
from harness.errors import CommandFailedError, HostNotReadyError, UsageError
from harness.guest import kernelsettings, protocol
from harness.paths import PROJECT_ROOT
from harness.progress import Progress

BUILD_DIR = "host-build"  # in the results directory
DEVICE_WAIT_SECONDS = 30.0
PSTORE = Path("/sys/fs/pstore")
PREVIOUS_BOOT_LINES = 300
# How often the watchdog reads the events and the kernel log while pytest runs.
WATCH_SECONDS = 0.2
SYSRQ_TRIGGER = Path("/proc/sysrq-trigger")
HOST_HANG_ACTION = ("the harness dumped the tasks (sysrq w, l, t: see kernel_log) and killed "
                    "pytest; the machine needs a reboot before --resume runs the rest")
# pstore's dmesg records keep the level and the time stamp in front of each message.
LOG_PREFIX = re.compile(r"^(<\d+>)?(\[\s*\d+\.\d+\]\s?)?")


def journal_files(results_dir: Path, round_number: int) -> tuple[Path, Path]:
    """(events, kernel log) of one round on the host, named as a guest's boots are."""
    suffix = "" if round_number == 1 else f"-{round_number}"
    return results_dir / f"events{suffix}.jsonl", results_dir / f"console{suffix}.log"


def journalled_rounds(results_dir: Path) -> tuple[list[str], list[list[results.TestOutcome]]]:
    """What the journal of earlier rounds holds: the collection order, and each round's
    outcomes; a test that started and never ended was running when the machine died."""
    order: list[str] = []
    rounds = []
    number = 1
    while (paths := journal_files(results_dir, number))[0].exists():
        events = results.parse_events(paths[0].read_text(errors="replace"))
        text = paths[1].read_text(errors="replace") if paths[1].exists() else ""
        order += [n for e in events if e["event"] == "collected" for n in e["nodeids"]
                  if n not in order]
        rounds.append(merge_round(events, text))
        number += 1
    return order, rounds


def merge_round(events: list[dict[str, Any]], kernel_log: str) -> list[results.TestOutcome]:
    """One round's outcomes: a test the watchdog stopped is hung, one that started and never
    ended was running when the machine died."""
    stopped = [e for e in events if e["event"] == "host-watchdog"]
    hung, reason = (stopped[-1]["nodeid"], stopped[-1]["reason"]) if stopped else (None, "")
    return results.merge(events, console.parse(kernel_log), hung_nodeid=hung,
                         hung_reason=reason, in_progress="crashed",
                         hung_action=HOST_HANG_ACTION)


def previous_boot_log(runner: CommandRunner) -> tuple[list[str], dict[str, str]]:
    """The kernel log of the boot before this one, and what each source gave."""
    lines: list[str] = []
    sources: dict[str, str] = {}
    if shutil.which("journalctl") is None:
        sources["journalctl -k -b -1"] = "journalctl is not installed"
    else:
        try:
            text = runner.run(["journalctl", "-k", "-b", "-1", "--no-pager", "-o", "cat"],
                              capture=True, what="journalctl -k -b -1")
            lines += text.splitlines()
            sources["journalctl -k -b -1"] = f"{len(text.splitlines())} lines"
        except CommandFailedError:
            sources["journalctl -k -b -1"] = "no previous boot in the journal"
    records = sorted(PSTORE.glob("dmesg-*")) if PSTORE.is_dir() else []
    for record in records:
        lines += record.read_text(errors="replace").splitlines()
    sources[str(PSTORE)] = f"{len(records)} dmesg records" if PSTORE.is_dir() \
        else "not mounted or no pstore backend"
    return lines, sources


def attach_previous_boot(rounds: list[list[results.TestOutcome]], lines: list[str],
                         sources: dict[str, str]) -> None:
    """The test the machine died in gets the previous boot's log, where there is one."""
    crashed = [t for t in rounds[-1] if t.outcome == "crashed"] if rounds else []
    lines = [LOG_PREFIX.sub("", line) for line in lines]
    for test in crashed:
        test.message = ("the machine died while this test ran (journal up to then; previous "
                        "boot's log: " + "; ".join(f"{k}: {v}" for k, v in sources.items())
                        + ")" + (f"\n{test.message}" if test.message else ""))
        if lines:
            test.kernel_log += lines[-PREVIOUS_BOOT_LINES:]
            test.kernel_errors += [e for e in console.distinct(console.kernel_errors(lines))
                                   if e not in test.kernel_errors]


def check_options(options: run.RunOptions) -> None:
    """What a run on the host cannot do, refused before anything is read or built."""
    if not options.yes_this_host:
        raise UsageError("--target host loads test_hmm into this machine's running kernel, "
                         "where a kernel bug can take the machine down",
                         "add --yes-this-host if that is what you mean")
    unsupported = {"--kernel": options.kernel, "--module": options.module,
                   "--modules-dir": options.modules_dir, "--reference": options.reference,
                   "--jobs": options.jobs > 1, "--shard": options.shard,
                   "--extra-kmod": options.extra_kmods, "--debug": options.debug_kernel,
                   "--replay": options.replay}
    given = [name for name, value in unsupported.items() if value]
    if given:
        raise UsageError(f"--target host runs the machine's own kernel and does not take "
                         f"{', '.join(given)}", "drop them, or run in QEMU (--target qemu)")


def test_hmm_source(options: run.RunOptions, release: str) -> kernelspec.TestHmmSource:
    if options.test_hmm_source is not None:
        return kernelspec.test_hmm_source(options.test_hmm_source)
    tree = Path(f"/lib/modules/{release}/source")
    if (tree / "lib/test_hmm.c").is_file():
        return kernelspec.test_hmm_source(tree)
    raise HostNotReadyError(
        f"no test_hmm.c for the running kernel: /lib/modules/{release}/source has no "
        "lib/test_hmm.c", "give --test-hmm-source DIR, the lib/ of the running kernel's source "
        "(Debian: apt install linux-source-X.Y and unpack /usr/src/linux-source-X.Y.tar.xz)")


def kmsg_line(record: bytes) -> str | None:
    """A /dev/kmsg record ("prio,seq,usec,flags;text") as a console line, None for its
    continuation lines (" KEY=value")."""
    text = record.decode(errors="replace")
    if text.startswith(" ") or ";" not in text:
        return None
    prefix, _, message = text.partition(";")
    fields = prefix.split(",")
    seconds = int(fields[2]) / 1e6 if len(fields) > 2 and fields[2].isdigit() else 0.0
    return f"[{seconds:12.6f}] {message.rstrip(chr(10))}"


class KmsgJournal:
    """Copies the kernel log from now on into `path`, fsynced after each batch of records."""

    def __init__(self, path: Path, kmsg: str = "/dev/kmsg") -> None:
        self.path = path
        self._fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, name="kmsg-journal", daemon=True)

    def __enter__(self) -> KmsgJournal:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        time.sleep(0.2)  # the last markers the plugin wrote
        self._stop.set()
        self._thread.join()
        os.close(self._fd)

    def _copy(self) -> None:
        with open(self.path, "a") as journal:
            while True:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                lines = []
                while ready:
                    try:
                        record = os.read(self._fd, 8192)
                    except BlockingIOError:
                        break
                    except BrokenPipeError:  # records overwritten before we read them
                        continue
                    if (line := kmsg_line(record)) is not None:
                        lines.append(line)
                if lines:
                    journal.write("\n".join(lines) + "\n")
                    journal.flush()
                    os.fsync(journal.fileno())
                elif self._stop.is_set():
                    return


def build(options: run.RunOptions, facts: hostcheck.HostFacts, compiler: str,
          runner: CommandRunner) -> Path:
    """test_hmm.ko and the cffi extension, for this kernel, in the results directory."""
    source = test_hmm_source(options, facts.release)
    headers = f"/lib/modules/{facts.release}/build"
    staging = options.results_dir / BUILD_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    uapi = source.uapi_h or source.test_hmm_c.with_name("test_hmm_uapi.h")
    for name, path in (("test_hmm.c", source.test_hmm_c), ("test_hmm_uapi.h", uapi),
                       ("Makefile", PROJECT_ROOT / "kmod" / "Makefile"),
                       ("test_hmm_evict.c", kmodext.EXTENSION)):
        shutil.copyfile(path, staging / name)
    kmodext.apply_to_staging(staging, Path("/"), headers)
    runner.run(["make", "-C", headers, f"M={staging}", f"CC={compiler}", "modules"],
               what="building test_hmm for the running kernel",
               fix=f"read the compiler's output above; {headers} must belong to "
                   f"{facts.release}")
    runner.run(["env", f"CC={compiler}", sys.executable,
                PROJECT_ROOT / "harness" / "guest" / "uapi_build.py",
                "--header", staging / "test_hmm_uapi.h", "--outdir", staging],
               what="building the cffi binding of test_hmm's uapi header")
    return staging


def module_params(assessment: hostcheck.Assessment) -> list[str]:
    if assessment.spm_choice is None:
        return []
    return [f"spm_addr_dev{i}={address:#x}"
            for i, address in enumerate(assessment.spm_choice.addresses)]


def wait_for_devices(mode: str) -> None:
    expected = protocol.expected_devices(mode)
    deadline = time.monotonic() + DEVICE_WAIT_SECONDS
    while time.monotonic() < deadline:
        if all(os.path.exists(path) for path in expected):
            return
        time.sleep(0.1)
    missing = [p for p in expected if not os.path.exists(p)]
    raise HostNotReadyError(f"test_hmm loaded but did not create {', '.join(missing)}",
                            "see the kernel log (dmesg) for test_hmm's messages")


def pytest_argv(options: run.RunOptions, events: Path, deselect: list[str], module: Path,
                params: list[str]) -> list[str]:
    """The plugin does not load test_hmm here (the run has, before the journal starts), but
    is told what was loaded, for the test that unloads it and loads it again."""
    argv = [sys.executable, "-m", "pytest", "-p", "harness.guest.plugin",
            "-c", str(PROJECT_ROOT / "tests/guest/pytest.ini"), "--rootdir", str(PROJECT_ROOT),
            *protocol.PYTEST_PLUGIN_OPTIONS, "-rfEs", f"--hmm-mode={options.mode}",
            f"--timeout={options.test_timeout}", "--hmm-no-load", f"--hmm-module={module}",
            *[f"--hmm-module-param={p}" for p in params], f"--hmm-events={events}",
            f"--hmm-seed={options.seed}", f"--hmm-explore={options.explore}"]
    if options.repeat > 1:
        argv.append(f"--hmm-repeat={options.repeat}")
    if options.stateful_unsafe:
        argv.append("--hmm-stateful-unsafe")
    argv += [f"--deselect={nodeid}" for nodeid in deselect]
    if options.keyword:
        argv += ["-k", options.keyword]
    return argv + [str(PROJECT_ROOT / suite) for suite in options.suites]


def run_on_host(options: run.RunOptions, runner: CommandRunner,
                progress: Progress) -> results.RunReport:
    started = time.monotonic()
    check_options(options)
    run.validate_request(options)
    issues = knownissues.load(run.known_issue_files(options))
    baseline = compare.load_outcomes(options.baseline) if options.baseline else None
    facts = hostfacts.gather(runner)
    assessment = hostcheck.assess(facts, coherent=options.mode != "private",
                                  spm_addresses=options.spm_addrs)
    if options.mode != "private":
        progress.say(hostcheck.describe_found(assessment.spm_found))
    progress.say(hostcheck.describe(assessment))
    if not assessment.ready or assessment.compiler is None:
        raise assessment.refusal()
    run.prepare_results_dir(options.results_dir)
    if not options.resume:
        run.clean_results(options.results_dir)
    run.save_options(options)
    order, rounds = journalled_rounds(options.results_dir)
    host = assessment.as_json()
    if options.resume:
        lines, sources = previous_boot_log(runner)
        attach_previous_boot(rounds, lines, sources)
        host["previous_boot_log"] = sources
        progress.say(f"resuming after {len(rounds)} round(s); the previous boot's log: "
                     + "; ".join(f"{k}: {v}" for k, v in sources.items()))
    status, problems = None, []
    if not order or results.still_to_run(order, rounds):
        finished = [t.nodeid for outcomes in rounds for t in outcomes
                    if t.outcome not in results.UNFINISHED]
        events_log, console_log = journal_files(options.results_dir, len(rounds) + 1)
        with kernelsettings.Applied(kernelsettings.BACKGROUND_MM_SETTINGS) as before:
            changed = host["kernel_settings"] = describe_settings(before)
            progress.say("for the run: " + ", ".join(
                f"{path} {change['before']} -> {change['during']}"
                for path, change in changed.items()))
            watched = run_round(options, facts, assessment, events_log, console_log,
                                finished, runner)
            status, problems = watched.status, watched.problems
        events = results.parse_events(events_log.read_text() if events_log.exists() else "")
        order += [n for e in events if e["event"] == "collected" for n in e["nodeids"]
                  if n not in order]
        rounds.append(merge_round(events, console_log.read_text(errors="replace")))
    options_set = kconfig.parse(facts.config_text)
    report = results.RunReport(
        tests=[],
        kernel={"release": facts.release, "origin": "host",
                "image": f"/lib/modules/{facts.release}"},
        kconfig=kconfig.checked_values(options_set), accelerator="host", mode=options.mode,
        strict_known_issues=options.strict_known_issues, kcidb_origin=options.kcidb_origin,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        exploration={"seed": options.seed, "explore": options.explore}, host=host,
        boots=len(rounds), guest_status=status, baseline=str(options.baseline or ""),
        problems=problems)
    run.judge(report, results.combine(order, rounds), issues,
              knownissues.KernelFacts(facts.release, "host", options_set), options.repeat,
              baseline)
    if baseline is not None:
        progress.say(run.baseline_table(options, report))
    report.wall_seconds = time.monotonic() - started
    report.finished = True
    run.write_reports(report, options.results_dir)
    return report


def describe_settings(before: dict[str, str]) -> dict[str, dict[str, str]]:
    """What results.json says of the settings the run changed (and then restored)."""
    return {path: {"before": value, "during": kernelsettings.BACKGROUND_MM_SETTINGS[path]}
            for path, value in before.items()}


def run_round(options: run.RunOptions, facts: hostcheck.HostFacts,
              assessment: hostcheck.Assessment, events_log: Path, console_log: Path,
              finished: list[str], runner: CommandRunner) -> WatchedPytest:
    """Build test_hmm (once per results directory), load it, run the tests not finished yet
    under pytest while the kernel log is journalled, unload it."""
    staging = options.results_dir / BUILD_DIR
    if not (staging / "test_hmm.ko").is_file():
        assert assessment.compiler is not None
        staging = build(options, facts, assessment.compiler, runner)
    env = {"PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(staging)])}
    module, params = staging / "test_hmm.ko", module_params(assessment)
    with KmsgJournal(console_log):
        runner.run(["insmod", module, *params], what="loading test_hmm")
        watched = WatchedPytest(status=None)
        try:
            wait_for_devices(options.mode)
            watched = run_watched(pytest_argv(options, events_log, finished, module, params),
                                  env, events_log, console_log, options.test_timeout, runner)
            return watched
        finally:
            if watched.hung_nodeid is None:
                runner.run(["rmmod", "test_hmm"], what="unloading test_hmm")
            elif runner.status(["rmmod", "test_hmm"]) != 0:
                watched.problems.append("test_hmm stays loaded: a task is stuck in it")


@dataclass
class WatchedPytest:
    """How pytest's run on the host ended: its status, or the test the watchdog stopped."""

    status: int | None
    hung_nodeid: str | None = None
    hung_reason: str = ""
    problems: list[str] = field(default_factory=list)


def run_watched(argv: list[str], env: dict[str, str], events_log: Path, console_log: Path,
                test_timeout: float, runner: CommandRunner) -> WatchedPytest:
    """pytest under the same watchdog as a guest's tests: a test stuck in the kernel past its
    timeout and grace, or one the kernel reports as locked up, stalled or hung, is stopped
    with the tasks dumped into the kernel log (the machine itself cannot be restarted)."""
    if runner.dry_run:
        return WatchedPytest(runner.status(argv, env=env))
    events, kernel_log = vm.EventFollower(events_log), vm.ConsoleFollower(console_log)
    watchdog = vm.Watchdog(test_timeout)
    watchdog.observe({"event": "guest-started"}, time.monotonic())  # a host has no boot to wait for
    proc = runner.start(argv, env=env)
    try:
        while proc.poll() is None:
            now = time.monotonic()
            for event in events.poll():
                watchdog.observe(event, now)
            for test, report in kernel_log.poll_hang_reports():
                watchdog.kernel_reported_hang(test, report, now)
            if watchdog.expired(now):
                return stop_hung_test(proc, watchdog, events_log, kernel_log)
            time.sleep(WATCH_SECONDS)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return WatchedPytest(proc.returncode)


def stop_hung_test(proc: subprocess.Popen[bytes], watchdog: vm.Watchdog, events_log: Path,
                   kernel_log: vm.ConsoleFollower) -> WatchedPytest:
    hung, reason = watchdog.current, watchdog.expiry_reason()
    with contextlib.suppress(OSError), open(SYSRQ_TRIGGER, "w") as sysrq:
        for key in vm.TASK_DUMP_KEYS:
            sysrq.write(key)
            sysrq.flush()
    vm.wait_for_task_dumps(kernel_log)
    os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)  # a task in uninterruptible sleep stays, killed or not
    # After pytest, so no partial line of its own can precede it; fsynced like its events.
    with open(events_log, "a") as journal:
        journal.write(json.dumps({"event": "host-watchdog", "nodeid": hung,
                                  "reason": reason}) + "\n")
        journal.flush()
        os.fsync(journal.fileno())
    return WatchedPytest(None, hung, reason, [
        f"the kernel is stuck in {hung}: reboot the machine, then --resume "
        f"{events_log.parent} runs the tests that did not run"])
