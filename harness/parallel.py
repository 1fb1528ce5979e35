"""`--jobs N`: the selection as N shards in N guests at once, merged into one report.

Each shard is a run of its own in DIR/shard-K, started as `run --resume DIR/shard-K` from the
options written there, so it behaves (and can be continued) exactly like a `--shard K/N` run.
jobs_problem() and shard_options() decide; run_jobs() starts, watches and merges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from harness import merge, qemu, results, run
from harness.commands import CommandRunner, format_command
from harness.errors import HarnessError, Interrupted, UsageError
from harness.progress import Progress

# What the host keeps for itself besides the guests: the harness, page cache, the build.
HOST_RESERVE_MIB = 1024
# QEMU's own memory per guest under TCG (translation cache, device state), measured as RSS
# above the guest's RAM here.
QEMU_OVERHEAD_MIB = 300


@dataclass(frozen=True)
class HostCapacity:
    cores: int
    available_mib: int


def host_capacity() -> HostCapacity:
    available_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available_kib = int(line.split()[1])
    return HostCapacity(len(os.sched_getaffinity(0)), available_kib // 1024)


def jobs_problem(jobs: int, guest_mib: int, host: HostCapacity) -> str:
    """Why this host cannot run `jobs` guests of `guest_mib` at once ("" when it can)."""
    if jobs < 1:
        return f"--jobs {jobs}: at least one guest runs"
    if jobs > host.cores:
        return (f"--jobs {jobs} needs a core per guest, and this host has {host.cores} "
                f"(under TCG a guest with a shared core runs slower than one after the other)")
    needed = jobs * (guest_mib + QEMU_OVERHEAD_MIB) + HOST_RESERVE_MIB
    if needed > host.available_mib:
        return (f"--jobs {jobs} needs about {needed} MiB ({jobs} x ({guest_mib} MiB guest + "
                f"{QEMU_OVERHEAD_MIB} MiB QEMU) + {HOST_RESERVE_MIB} MiB for the host), and "
                f"{host.available_mib} MiB is available")
    return ""


def guest_cpus(jobs: int, requested: int, cores: int) -> int:
    """vCPUs per guest: what was asked, but no more than the guest's share of the cores."""
    return max(1, min(requested, cores // jobs))


def shard_dir(results_dir: Path, index: int) -> Path:
    return results_dir / f"shard-{index}"


def shard_options(options: run.RunOptions, index: int, cpus: int) -> run.RunOptions:
    """The options of shard `index`: its own results directory, its part of the selection,
    its share of the cores. The baseline judges the merged report, not a shard."""
    return replace(options, results_dir=shard_dir(options.results_dir, index),
                   shard=f"{index}/{options.jobs}", jobs=1, cpus=cpus, baseline=None,
                   resume=False)


def check(options: run.RunOptions, host: HostCapacity) -> None:
    if options.shard is not None:
        raise UsageError("--jobs and --shard do not go together: --jobs cuts the selection "
                         "into shards itself", "give one of them")
    if options.reference:
        raise UsageError("--jobs and --reference do not go together: the C selftest runs "
                         "its cases whole", "run --reference without --jobs")
    layout = qemu.guest_layout(coherent=options.mode != "private",
                               memory_mib=options.memory_mib)
    if problem := jobs_problem(options.jobs, layout.memory_mib, host):
        raise UsageError(problem, "give a smaller --jobs, or --memory for smaller guests")


def run_jobs(options: run.RunOptions, runner: CommandRunner,
             progress: Progress) -> results.RunReport:
    host = host_capacity()
    check(options, host)
    run.validate(options)
    cpus = guest_cpus(options.jobs, options.cpus, host.cores)
    parts = [shard_options(options, index, cpus) for index in range(1, options.jobs + 1)]
    run.prepare_results_dir(options.results_dir)
    if not options.resume:
        run.clean_results(options.results_dir)
        for part in parts:
            shutil.rmtree(part.results_dir, ignore_errors=True)
        for part in parts:
            run.prepare_results_dir(part.results_dir)
            run.save_options(part)
    run.save_options(replace(options, resume=False))
    # A shard outlives no harness: killed, it gets SIGTERM and writes what it has.
    argvs = [["setpriv", "--pdeathsig", "TERM", sys.executable, "-m", "harness", "run",
              "--resume", str(p.results_dir)] for p in parts]
    if runner.dry_run:
        for argv in argvs:
            runner.announce(format_command(argv))
        return results.RunReport(tests=[], kernel={}, kconfig={}, accelerator="",
                                 mode=options.mode)
    # One build for all: the shards then find the kernel, root and module in the cache.
    run.prepare(options, runner, progress)
    progress.say(f"running {options.jobs} shards at once, {cpus} vCPU(s) each; their output "
                 f"is prefixed with the shard")
    sources = [p.results_dir for p in parts]
    try:
        statuses = _run_all(argvs, progress)
    except Interrupted as stop:
        if all((source / "results.json").exists() for source in sources):
            stop.report = merge.merge_directories(sources, options.results_dir)
        raise
    missing = [f"shard {i} (exit {s})" for i, (s, p) in enumerate(zip(statuses, parts,
                                                                       strict=True), start=1)
               if not (p.results_dir / "results.json").exists()]
    if missing:
        raise HarnessError(f"{', '.join(missing)} left no results", "see the shard's output "
                           "above, prefixed with its number")
    return merge.merge_directories(sources, options.results_dir, baseline=options.baseline,
                                   strict_known_issues=options.strict_known_issues)


def _run_all(argvs: list[list[str]], progress: Progress) -> list[int]:
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True) for argv in argvs]
    pumps = [threading.Thread(target=_relay, args=(p, f"shard {i}/{len(processes)} | ",
                                                   progress), daemon=True)
             for i, p in enumerate(processes, start=1)]
    for pump in pumps:
        pump.start()
    try:
        statuses = [p.wait() for p in processes]
    except Interrupted:
        # Each shard writes its finished tests and marks the running one interrupted.
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait()
        raise
    finally:
        for pump in pumps:
            pump.join(timeout=5)
    return statuses


def _relay(process: subprocess.Popen[str], prefix: str, progress: Progress) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        print(prefix + line, end="", file=progress.stream, flush=True)
