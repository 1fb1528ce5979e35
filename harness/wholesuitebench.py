"""Acts: `bench --whole-suite`, the ported suites as a warm run against the kernel's C selftest
booted in the same kind of guest (harness.wholesuite decides what each side runs).

Each pair runs the harness as a user starts it, as a process of its own, timed from the
command to its exit, and boots the C selftest's guest, timed from QEMU's start to its exit:
the same kernel, root, shares, machine and memory, with a shell script as init that loads
test_hmm and runs hmm-tests, as test_hmm.sh does. Odd pairs run the harness first, even pairs
the C selftest first.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace

from harness import qemu, results, run, startupbench, vm, wholesuite
from harness.commands import CommandRunner
from harness.errors import HarnessError
from harness.progress import Progress


@dataclass(frozen=True)
class Side:
    seconds: float
    outcomes: dict[str, int]
    tests_seconds: float
    boots: int = 1


def c_selftest_boot(spec: qemu.VmSpec, options: run.RunOptions, runner: CommandRunner,
                    keep_as: str) -> Side:
    """Boot the C selftest's guest; its TAP output is kept as `keep_as`. A boot that died
    before hmm-tests started (a TCG flake) is retried once, as the harness's run retries its
    own, and its time counts."""
    guest_dir = options.results_dir / "guest"
    tap = guest_dir / wholesuite.TAP_NAME
    times = guest_dir / wholesuite.TIMES_NAME
    wall, boots = 0.0, 0
    while True:
        for name in (wholesuite.TAP_NAME, wholesuite.TIMES_NAME):
            (guest_dir / name).unlink(missing_ok=True)
        guest = vm.boot(spec, runner, options.run_timeout, options.test_timeout,
                        lambda event: None)
        if runner.dry_run:
            return Side(0.0, {}, 0.0)
        wall, boots = wall + guest.wall_seconds, boots + 1
        if times.exists() or guest.timed_out or boots == 2:
            break
    span = wholesuite.uptimes(times.read_text()) if times.exists() else None
    if guest.timed_out or guest.returncode != 0 or not tap.exists() or span is None:
        raise HarnessError(
            f"the C selftest's guest did not finish (QEMU exit {guest.returncode}"
            f"{', timed out' if guest.timed_out else ''}, "
            f"{'a' if tap.exists() else 'no'} TAP output)", f"see {spec.console_log} and {tap}")
    outcomes = dict(wholesuite.tap_outcomes(tap.read_text()))
    tap.rename(guest_dir / keep_as)
    return Side(wall, outcomes, span[1] - span[0], boots)


def harness_side(options: run.RunOptions, runner: CommandRunner) -> Side:
    status, report, started, ended = startupbench.run_as_a_process(options, runner)
    if status not in (0, 1):
        raise HarnessError(f"the measured run ended with exit {status}, not a verdict",
                           f"see {options.results_dir}")
    # A boot that died before user space (a TCG flake) is retried: each boot has its events.
    boots = [results.parse_events(path.read_text())
             for path in sorted(options.results_dir.glob("events*.jsonl"))]
    return Side(ended - started, dict(Counter(str(t["outcome"]) for t in report["tests"])),
                sum(wholesuite.tests_span(events) for events in boots),
                int(report.get("boots", 1)))


def bench_whole_suite(options: run.RunOptions, rounds: int, runner: CommandRunner,
                      progress: Progress) -> dict[str, object]:
    measured = replace(options, suites=wholesuite.PORTED_SUITES, keyword=None, benchmark=False,
                       resume=False, results_dir=options.results_dir / "run-1")
    run.validate(measured)
    directory = options.results_dir
    c_options = replace(options, results_dir=directory / "c-selftest")
    (c_options.results_dir / "guest").mkdir(parents=True, exist_ok=True)
    prepared = run.prepare(measured, runner, progress)
    layout = qemu.guest_layout(coherent=options.mode != "private",
                               memory_mib=options.memory_mib)
    (c_options.results_dir / "guest" / wholesuite.SCRIPT_NAME).write_text(
        wholesuite.c_selftest_script(layout.module_params, options.mode))
    spec = run.guest_vm_spec(c_options, prepared, layout,
                             c_options.results_dir / "monitor.sock",
                             extra_kernel_args=(f"hmm_script={wholesuite.SCRIPT_NAME}",))
    if runner.dry_run:
        c_selftest_boot(spec, c_options, runner, "")
        runner.announce(" ".join(startupbench.run_argv(measured.results_dir)))
        return {}
    pairs = []
    for number in range(1, rounds + 1):
        # Every pair's results are kept: run-N/ and c-selftest/guest/c-selftest-N.tap.
        harness = replace(measured, results_dir=directory / f"run-{number}")
        tap = f"c-selftest-{number}.tap"
        if number % 2:
            python = harness_side(harness, runner)
            c = c_selftest_boot(spec, c_options, runner, tap)
        else:
            c = c_selftest_boot(spec, c_options, runner, tap)
            python = harness_side(harness, runner)
        pair = wholesuite.Pair(python.seconds, c.seconds, python.outcomes, c.outcomes,
                               python.tests_seconds, c.tests_seconds, python.boots, c.boots)
        pairs.append(pair)
        progress.say(f"pair {number}/{rounds}: harness run {pair.python_seconds:.1f} s "
                     f"({wholesuite.describe(pair.python_outcomes)}), C selftest "
                     f"{pair.c_seconds:.1f} s ({wholesuite.describe(pair.c_outcomes)})")
    summary = wholesuite.summarize(pairs)
    progress.say(f"the ported suites ({', '.join(wholesuite.PORTED_SUITES)}) as a warm run, "
                 f"against hmm-tests {' '.join(wholesuite.selftest_variants(options.mode))} "
                 "in the same kind of guest:\n" + str(summary["table"]))
    (directory / "whole-suite.json").write_text(json.dumps(summary, indent=2))
    return summary
