"""Acts: `bench --startup`, a warm run's start-up against a bare boot of the same kernel.

Each round boots the kernel once with a busybox initramfs that powers off at once (the
reference), then runs the harness as a user would, as a process of its own, on a small
selection. The harness's results.json holds the moments of its boot on both clocks
(harness.startup), so the phases of every run line up with the bare boot of its round.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import initramfs, qemu, run, startup, vm
from harness.commands import CommandRunner, format_command
from harness.errors import HarnessError
from harness.progress import Progress

STARTUP_KEYWORD = "test_open_close"
BARE_INIT = b"#!/bin/busybox sh\nexec /bin/busybox poweroff -f\n"
BARE_BOOT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Round:
    bare_seconds: float
    phases: list[startup.Phase]
    first_result: float
    wall_seconds: float
    boots: int = 1  # more than one: the guest died or stuck before user space and was rebooted


def bare_initramfs(busybox: Path, target: Path) -> Path:
    archive = initramfs.newc_archive([
        initramfs.Entry("bin", 0o40755), initramfs.Entry("dev", 0o40755),
        initramfs.Entry("bin/busybox", 0o100755, busybox.read_bytes()),
        initramfs.Entry("init", 0o100755, BARE_INIT)])
    target.write_bytes(archive)
    return target


def bare_spec(prepared: run.Prepared, options: run.RunOptions, image: Path,
              directory: Path) -> qemu.VmSpec:
    """The harness's own QEMU machine and kernel arguments, with nothing to mount."""
    layout = qemu.guest_layout(coherent=options.mode != "private",
                               memory_mib=options.memory_mib)
    return qemu.VmSpec(
        qemu=options.qemu, accel=prepared.accel.accel, cpus=options.cpus,
        memory_mib=layout.memory_mib, kernel_image=prepared.kernel.image, initramfs=image,
        kernel_args=(*qemu.BASE_KERNEL_ARGS, *layout.kernel_args,
                     *prepared.kernel.boot_args),
        shares=(), console_log=directory / "bare-console.log",
        events_log=directory / "bare-events.jsonl", monitor_socket=directory / "bare.sock",
        firmware=qemu.direct_boot_firmware())


def bare_boot(spec: qemu.VmSpec, runner: CommandRunner) -> float:
    guest = vm.boot(spec, runner, BARE_BOOT_TIMEOUT, BARE_BOOT_TIMEOUT, lambda event: None)
    if guest.timed_out or guest.returncode != 0:
        raise HarnessError(f"the bare boot did not power off (QEMU exit {guest.returncode}"
                           f"{', timed out' if guest.timed_out else ''})",
                           f"see {spec.console_log}")
    return guest.wall_seconds


def run_argv(results_dir: Path) -> list[str]:
    """The run as a user starts it, its options saved beforehand in results_dir."""
    return [sys.executable, "-m", "harness", "run", "--resume", str(results_dir)]


def run_as_a_process(options: run.RunOptions,
                     runner: CommandRunner) -> tuple[int, dict[str, Any], float, float]:
    """One run as its own process, as a user starts it: its exit status, its results.json,
    and when it started and ended on the host's monotonic clock."""
    shutil.rmtree(options.results_dir, ignore_errors=True)
    run.prepare_results_dir(options.results_dir)
    run.save_options(options)
    argv = run_argv(options.results_dir)
    runner.announce(format_command(argv))
    started = time.monotonic()
    status = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True).returncode
    ended = time.monotonic()
    report_path = options.results_dir / "results.json"
    try:
        report: dict[str, Any] = json.loads(report_path.read_text())
    except (OSError, ValueError) as error:
        raise HarnessError(f"the measured run (exit {status}) left no results in "
                           f"{options.results_dir}", f"run it by hand: {format_command(argv)}"
                           ) from error
    return status, report, started, ended


def harness_run(options: run.RunOptions, runner: CommandRunner) -> tuple[dict[str, Any],
                                                                        float, float, int]:
    """One warm run as its own process: its start-up moments, and when it started and ended
    on the host's monotonic clock."""
    status, report, started, ended = run_as_a_process(options, runner)
    report_path = options.results_dir / "results.json"
    if status != 0 or not report.get("startup"):
        raise HarnessError(f"the measured run ended with exit {status}; a start-up benchmark "
                           "needs a run that passes", f"see {report_path}")
    return report["startup"], started, ended, int(report.get("boots", 1))


def bench_startup(options: run.RunOptions, rounds: int, runner: CommandRunner,
                  progress: Progress) -> dict[str, Any]:
    run.validate(options)
    directory = options.results_dir
    directory.mkdir(parents=True, exist_ok=True)
    prepared = run.prepare(options, runner, progress)
    image = bare_initramfs(prepared.root / "bin" / "busybox", directory / "bare-initramfs.img")
    spec = bare_spec(prepared, options, image, directory)
    measured = replace(options, keyword=options.keyword or STARTUP_KEYWORD, benchmark=False,
                       resume=False, results_dir=directory / "run")
    if runner.dry_run:
        bare_boot(spec, runner)
        runner.announce(format_command(run_argv(measured.results_dir)))
        return {}
    progress.say("warming up: one bare boot and one run, not counted")
    bare_boot(spec, runner)
    harness_run(measured, runner)
    results: list[Round] = []
    for number in range(1, rounds + 1):
        bare = bare_boot(spec, runner)
        line, started, ended, boots = harness_run(measured, runner)
        first = startup.first_result(line, started)
        if first is None:
            raise HarnessError("the measured run reported no test result",
                               f"see {measured.results_dir}")
        results.append(Round(bare, startup.phases(line, started, ended), first, ended - started,
                           boots))
        rebooted = f"; {boots} boots: see {measured.results_dir}" if boots > 1 else ""
        progress.say(f"round {number}/{rounds}: bare boot {bare:.2f} s, first result "
                     f"{first:.2f} s ({first / bare:.2f}x){rebooted}")
    summary = summarize(results)
    progress.say("the last round on both clocks (seconds since the command started, and the "
                 "guest's uptime):\n" + startup.table(results[-1].phases))
    progress.say("start-up of a warm run (medians over the rounds):\n" + summary["table"])
    (directory / "startup.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarize(rounds: list[Round]) -> dict[str, Any]:
    bare = statistics.median(r.bare_seconds for r in rounds)
    first = statistics.median(r.first_result for r in rounds)
    wall = statistics.median(r.wall_seconds for r in rounds)
    names = [p.name for p in rounds[0].phases]
    rows = []
    for name in names:
        values = [p.seconds for r in rounds for p in r.phases if p.name == name]
        rows.append({"phase": name, "median": statistics.median(values), "min": min(values),
                     "max": max(values)})
    lines = [f"{'phase':42} {'median':>7} {'min':>7} {'max':>7}"]
    lines += [f"{row['phase']:42} {row['median']:7.2f} {row['min']:7.2f} {row['max']:7.2f}"
              for row in rows]
    lines.append(f"{'bare boot (busybox initramfs, power-off)':42} {bare:7.2f} "
                 f"{min(r.bare_seconds for r in rounds):7.2f} "
                 f"{max(r.bare_seconds for r in rounds):7.2f}")
    lines.append(f"command to the first result: {first:.2f} s = {first / bare:.2f}x the bare "
                 f"boot; whole run {wall:.2f} s")
    return {"rounds": len(rounds), "bare_boot": bare, "first_result": first,
            "first_result_ratio": first / bare, "wall": wall, "phases": rows,
            "table": "\n".join(lines),
            "per_round": [{"bare_boot": r.bare_seconds, "first_result": r.first_result,
                           "wall": r.wall_seconds, "boots": r.boots,
                           "phases": {p.name: p.seconds for p in r.phases}} for r in rounds]}
