"""The command line. The one place where errors become exit statuses."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from harness import (
    bisect,
    compare,
    debian,
    exploration,
    hostcheck,
    hostfacts,
    hostrun,
    lavaprep,
    matrix,
    merge,
    parallel,
    replay,
    run,
    startupbench,
    wholesuite,
    wholesuitebench,
)
from harness.commands import CommandRunner
from harness.errors import HarnessError, Interrupted, UsageError
from harness.paths import default_cache_dir
from harness.progress import Progress, summary
from harness.results import RunReport

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_HARNESS = 125  # `git bisect run` skips the commit
# 128 + the signal: `git bisect run` stops at statuses above 127 instead of judging the commit.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
# Under TCG the slowest selftest case (benchmark_thp_migration, 128 THPs) takes about 95 s
# and every other case under 20 s; the benchmark carries its own longer timeout marker.
DEFAULT_TEST_TIMEOUT = 120

DESCRIPTION = """\
Boot a kernel in QEMU, load the kernel's test_hmm driver and run the HMM suites in the guest.

exit status:
  0    every selected test passed (or was skipped with a reason)
  1    a test failed, crashed or hung, or the kernel reported an error (WARN, Oops, ...)
  125  the harness could not build, boot or run (bad input included); git bisect run
       treats it as 'skip this commit'
  130  stopped by SIGINT, 143 by SIGTERM: the results of the finished tests are written,
       the test that was running is 'interrupted'; --resume DIR continues

A test that goes wrong exactly as an entry of known-issues.toml (or --known-issues) says is a
known-failure: listed, but not failing the run. With --baseline, only regressions against
the baseline fail it.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")


BENCH_SUITES = ("tests/guest/test_hmm_benchmark.py", "tests/guest/bench/bench_read_latency.py")
BENCH_KEYWORD = "benchmark_thp_migration or read_latency"
# bench --reference: the Python and C tables in interleaved pairs, instead of C after Python.
BENCH_PAIRS_SUITES = ("tests/guest/bench/bench_migration_pairs.py",
                      "tests/guest/bench/bench_read_latency.py")
BENCH_PAIRS_KEYWORD = "migration_pair or read_latency"
DEFAULT_BENCH_PAIRS = 5


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel", metavar="SPEC", action="append",
                        help="the kernel to test: a Debian suite (sid, experimental), a Debian "
                             f"release such as {debian.PINNED_RELEASE} or sid:RELEASE, a kernel "
                             "source tree (configured with vm-images/kconfig/ and built out of "
                             "tree under the cache), a built tree or O= directory, a directory "
                             "like /usr/lib/modules/RELEASE with vmlinuz and config, or a "
                             "bzImage (with --modules-dir or --module). Given more than once "
                             "(run only): the same tests on each kernel and a table of test x "
                             f"kernel. Default: Debian sid {debian.PINNED_RELEASE}, else sid's "
                             "newest kernel with CONFIG_DEVICE_PRIVATE")
    parser.add_argument("--modules-dir", type=Path, metavar="DIR",
                        help="with --kernel BZIMAGE: the kernel's modules directory (make "
                             "modules_install's lib/modules/RELEASE): its config, the 9p modules "
                             "if not built in, and its build link to build test_hmm against")
    parser.add_argument("--test-hmm-source", type=Path, metavar="PATH",
                        help="build test_hmm from this test_hmm.c, or from a directory holding "
                             "test_hmm.c and test_hmm_uapi.h (or a tree's lib/), for the chosen "
                             "kernel; the kernel is not rebuilt")
    parser.add_argument("--debug", dest="debug_kernel", action="store_true",
                        help="for a kernel source tree: also apply vm-images/kconfig/"
                             "debug.config (DEBUG_VM, KASAN, PROVE_LOCKING, DEBUG_PAGEALLOC); "
                             "slower to build, boot and run, see the README")
    parser.add_argument("--mode", default="private", metavar="MODE",
                        help="memory model: private (devices 0/1), coherent (devices 2/3, on "
                             "soft-reserved guest memory) or all (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=Path("hmm-results"), metavar="DIR",
                        help="where junit.xml, results.json, console.log and the guest's "
                             "output go (default: %(default)s); earlier results there are "
                             "replaced")
    parser.add_argument("--reference", action="store_true",
                        help="also build the kernel's own C selftest (hmm-tests) from the same "
                             "source and run its matching cases in the same guest, after the "
                             "Python suites, and show both side by side (results.json "
                             "'reference'). The C results do not change the exit status")
    parser.add_argument("--module", type=Path, metavar="KO",
                        help="load this prebuilt test_hmm.ko instead of building one; its "
                             "vermagic is checked against the kernel")
    parser.add_argument("--accel", default="auto", metavar="ACCEL",
                        help="auto (KVM if a probe guest really runs, else TCG), kvm or tcg "
                             "(default: %(default)s)")
    parser.add_argument("--qemu", default="qemu-system-x86_64", metavar="PATH",
                        help="the QEMU binary (default: %(default)s from PATH)")
    parser.add_argument("--guest-root", default="image", metavar="HOW",
                        help="image: the guest root as a read-only erofs image on virtio-blk, "
                             "built once per root (where the kernel has virtio_blk and erofs, "
                             "else 9p, and the run says why); 9p: over virtio-9p "
                             "(default: %(default)s)")
    parser.add_argument("--cpus", type=int, default=2,
                        help="guest vCPUs (default: %(default)s)")
    parser.add_argument("--memory", type=int, metavar="MIB", dest="memory_mib",
                        help="guest memory in MiB (default: 2048 for private, 6144 for "
                             "coherent and all, which need RAM above 4.5 GiB)")
    parser.add_argument("--test-timeout", type=int, default=DEFAULT_TEST_TIMEOUT,
                        metavar="SECONDS",
                        help="pytest-timeout for each test in the guest; a test still stuck "
                             "in the kernel 60 s later is dumped and recorded as hung "
                             "(default: %(default)s)")
    parser.add_argument("--run-timeout", type=int, default=None, metavar="SECONDS",
                        help="the whole run is stopped after this (default: "
                             f"{run.RUN_TIMEOUT_PER_REPETITION} for each --repeat)")
    parser.add_argument("--mirror", default=debian.DEFAULT_MIRROR, metavar="URL",
                        help="Debian mirror for kernels and the guest root "
                             "(default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="downloads and builds, kept between runs (default: "
                             "$HMM_HARNESS_CACHE or ~/.cache/hmm-harness)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands a run would execute, and execute none")
    parser.add_argument("--known-issues", type=Path, action="append", default=[],
                        metavar="FILE",
                        help="known failures of your own, in the format of the project's "
                             "known-issues.toml (which always applies); repeatable")
    parser.add_argument("--strict-known-issues", action="store_true",
                        help="a known issue whose test now passes (fixed?) fails the run, so "
                             "the list stays true")
    parser.add_argument("--kcidb-origin", default="hmm_harness", metavar="NAME",
                        help="the KCIDB origin (your CI system's name, [a-z0-9_]) of "
                             "results.kcidb.json (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="compare with an earlier run (its results directory or "
                             "results.json): exit 1 only for regressions, tests that passed "
                             "there and do not pass here, or new tests that fail")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    runp = commands.add_parser("run", help="run the HMM suites in a guest",
                               description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_options(runp)
    runp.add_argument("-k", dest="keyword", metavar="EXPR",
                      help="only tests matching this pytest -k expression (with --reference, "
                           "C cases whose Python twin's name matches)")
    runp.add_argument("--suite", action="append", dest="suites", metavar="PATH",
                      help="a suite file or directory under the project, repeatable "
                           f"(default: {' '.join(run.DEFAULT_SUITES)})")
    runp.add_argument("--repeat", type=int, default=1, metavar="N",
                      help="run the selection N times in one boot (fresh guests only after a "
                           "crash or hang), report each test's pass count and list the flaky "
                           "ones (default: %(default)s)")
    runp.add_argument("--seed", metavar="N",
                      help="the seed the stateful suite draws its sequences from, to repeat a "
                           "run (default: a fresh one, printed at the start and kept in "
                           "results.json)")
    runp.add_argument("--explore", type=int, default=exploration.DEFAULT_EXPLORE, metavar="N",
                      help="sequences each state machine of the stateful suite runs "
                           "(default: %(default)s)")
    runp.add_argument("--stateful-unsafe", action="store_true",
                      help="let the stateful suite make the calls its model knows crash the "
                           "kernel (known-issues.toml), to find and reproduce such crashes; "
                           "then see 'reproduce'")
    runp.add_argument("--shard", metavar="K/N",
                      help="run only part K of N of the selection: every shard of a run "
                           "computes the same partition, so N jobs with K=1..N run each test "
                           "once; 'merge' joins their results")
    runp.add_argument("--durations", type=Path, metavar="RESULTS",
                      help="balance --shard by the test durations in an earlier run's "
                           "results directory or results.json (give every shard the same one; "
                           "without it, each shard gets as many tests)")
    runp.add_argument("--jobs", type=int, default=1, metavar="N",
                      help="run the selection as N shards in N guests at once on this machine, "
                           "then merge them into the results directory (shard K in "
                           "DIR/shard-K); refused when the host's cores or memory cannot hold "
                           "N guests (default: %(default)s)")
    runp.add_argument("--target", default="qemu", choices=("qemu", "host"),
                      help="qemu: boot the kernel in a guest; host: run on this machine's "
                           "running kernel, building and loading test_hmm here (needs root, "
                           "the kernel's build directory and --yes-this-host; see "
                           "docs/vendor-mode.md) (default: %(default)s)")
    runp.add_argument("--yes-this-host", action="store_true",
                      help="with --target host: yes, load test_hmm into this machine's kernel")
    runp.add_argument("--spm-addr", action="append", dest="spm_addrs", default=[],
                      metavar="ADDR", help="with --target host: the start of device N's 256 "
                      "MiB of soft-reserved memory instead of the discovered one; once per "
                      "device")
    runp.add_argument("--resume", type=Path, metavar="DIR",
                      help="continue the run whose results are in DIR (interrupted, killed or "
                           "crashed) with the options it was started with; finished tests are "
                           "not run again. Give no other option with it")
    runp.add_argument("--extra-kmod", type=Path, action="append", dest="extra_kmods",
                      metavar="DIR", default=[],
                      help="also build this out-of-tree module directory for the kernel; the "
                           "guest finds it as /hmm/build/extra/NAME/NAME.ko (the harness's own "
                           "tests use it for modules that oops, warn or hang on purpose)")
    runp.add_argument("--debug-symbols", action="store_true",
                      help="also decode vmlinux frames of kernel reports to file:line: fetch "
                           "Debian's linux-image-RELEASE-dbg once into the cache (a 1.2 GB "
                           "download, minutes to unpack, 440 MB kept). Module frames (test_hmm, "
                           "--extra-kmod) are decoded without it")
    benchp = commands.add_parser(
        "bench", help="measure migration throughput and ioctl overhead in a guest",
        description="Run the THP migration benchmark (sys->dev and dev->sys, with and without "
                    "THP, a quarter THP to 128 THPs) and the one-page HMM_DMIRROR_READ "
                    "overhead benchmark from Python in a guest, and print the figures. With "
                    "--reference, Python's table and the C selftest's benchmark_thp_migration "
                    "run in --pairs interleaved pairs in the same boot, and the table shows the "
                    "median Python/C throughput ratio of the pairs with its spread. Figures go "
                    "to results.json 'benchmark'. Exit status as for run.")
    _common_options(benchp)
    benchp.add_argument("--startup", action="store_true",
                        help="instead: measure a warm run's start-up, phase by phase (host "
                             "work, kernel boot, initramfs, Python, pytest, module load, "
                             "collection, first test), against a bare boot of the same kernel "
                             "with a busybox initramfs; figures go to DIR/startup.json")
    benchp.add_argument("--pairs", type=int, default=None, metavar="N",
                        help="with --reference: pairs of one Python and one C table, odd pairs "
                             "Python first and even pairs C first (default "
                             f"{DEFAULT_BENCH_PAIRS}; about 90 s a pair under TCG)")
    benchp.add_argument("--whole-suite", action="store_true",
                        help="instead: the ported suites (" + ", ".join(
                            wholesuite.PORTED_SUITES) + ") as a warm run, command to exit, "
                             "against the kernel's C selftest (hmm-tests, the same variants) "
                             "booted in the same kind of guest with a shell script as init, "
                             "QEMU start to exit; figures go to DIR/whole-suite.json")
    benchp.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="with --startup or --whole-suite: pairs of measured runs "
                             "(default 3; the medians are printed)")
    bisectp = commands.add_parser(
        "bisect", help="find the first commit where the selected tests stop passing",
        description="Bisect --tree between --good and --bad: at each step build and run as "
                    "'run' does; every selected test passing is good, a test not passing is "
                    "bad, a commit the harness cannot build, boot or run is skipped. Without "
                    "--kernel the tree is the kernel (built out of tree with ccache); with "
                    "--kernel, point --test-hmm-source into the tree. The bisection runs in a "
                    "worktree under the cache; the checkout is left alone. Prints the first "
                    "bad commit and the log of the tests that failed there. Exit status: 0 "
                    "when it was found, 125 when it could not be.")
    bisectp.add_argument("--tree", type=Path, required=True, metavar="PATH",
                         help="the git repository to bisect")
    bisectp.add_argument("--good", required=True, metavar="REV",
                         help="a commit where the tests pass")
    bisectp.add_argument("--bad", required=True, metavar="REV",
                         help="a later commit where they do not")
    bisectp.add_argument("-k", dest="keyword", metavar="EXPR",
                         help="only tests matching this pytest -k expression")
    bisectp.add_argument("--suite", action="append", dest="suites", metavar="PATH",
                         help="a suite file or directory under the project, repeatable")
    _common_options(bisectp)
    reproducep = commands.add_parser(
        "reproduce", help="replay and shrink a stateful sequence that crashed or hung a guest",
        description="Take the stateful sequence that crashed or hung the guest in a run's "
                    "results, replay it in a fresh guest to confirm it, shrink it by delta "
                    "debugging (one boot per try), and write it to RESULTS/reproducer/ as a "
                    "pytest case and a standalone C program. Exit status: 0 the crash "
                    "reproduces, 1 it did not happen again, 125 bad input.")
    reproducep.add_argument("results", type=Path, metavar="RESULTS",
                            help="the results directory of the run")
    reproducep.add_argument("--budget", type=int, default=replay.DEFAULT_BUDGET, metavar="N",
                            help="guest boots the shrinking may take (default: %(default)s)")
    hostp = commands.add_parser(
        "host-check", help="check whether this machine can run the suites on its own kernel",
        description="Read-only checks of the machine the harness runs on, for running the "
                    "suites on its running kernel (vendor mode): root, test_hmm not loaded, "
                    "the kernel's build directory, config and compiler, the Python packages "
                    "the suites need, and for coherent mode the soft-reserved memory test_hmm "
                    "would use (what was found, what was chosen and why). Nothing is built "
                    "or loaded. Exit status: 0 ready, 125 not, with what to fix.")
    hostp.add_argument("--mode", default="all", choices=("private", "coherent", "all"),
                       help="the memory mode to check for (default: %(default)s)")
    hostp.add_argument("--spm-addr", action="append", dest="spm_addrs", default=[],
                       metavar="ADDR", help="the start of device N's 256 MiB of soft-reserved "
                       "memory instead of the discovered one; give it once per device")
    hostp.add_argument("--json", type=Path, metavar="FILE",
                       help="also write the findings to FILE as JSON")
    mergep = commands.add_parser(
        "merge", help="merge the results of shards, repeated runs or kernels into one report",
        description="Merge results directories into one report in --results: summary, "
                    "results.json, junit.xml, results.ktap. The shards of a run (--shard, "
                    "--jobs) become that run's report, in its test order; runs of the same "
                    "selection become repetitions (pass counts, flaky tests); runs of different "
                    "kernels need --allow-mixed. Exit status as for run: 0 passed, 1 a test "
                    "did not pass (with --baseline: a regression), 125 bad input.")
    mergep.add_argument("sources", type=Path, nargs="+", metavar="DIR",
                        help="a results directory (or its results.json)")
    mergep.add_argument("--results", type=Path, default=Path("hmm-results"), metavar="DIR",
                        help="where to write the merged report (default: %(default)s)")
    mergep.add_argument("--allow-mixed", action="store_true",
                        help="merge results of different kernels, each test named after its "
                             "kernel release")
    mergep.add_argument("--baseline", type=Path, metavar="DIR",
                        help="judge the merged report against an earlier run, as run does")
    mergep.add_argument("--strict-known-issues", action="store_true",
                        help="a known issue that passed (fixed?) fails the merged report")
    _lava_parser(commands)
    return parser


LAVA_DESCRIPTION = """\
Write a LAVA job definition (device_type: qemu) that runs the same suites as 'run', and
prepare its artefacts in --output from the harness's cache: the kernel image (vmlinuz), the
LAVA initramfs (initramfs.cpio.gz), the guest root as a squashfs image (rootfs.squashfs) and
test_hmm.ko, all to be served under --artifact-url. The job is job.yaml; local-device.yaml is
a device dictionary for trying it with lava-run on this machine. See docs/lava.md.
Exit status: 0 when the job was written, 125 when it could not be.
"""


def _lava_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    lavap = commands.add_parser("lava-job", help="write a LAVA job that runs the suites",
                                description=LAVA_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    lavap.add_argument("--artifact-url", required=True, metavar="BASE",
                       help="the URL the artefacts will be served from (http://, https:// or "
                            "file://); the job downloads BASE/vmlinuz and so on")
    lavap.add_argument("--output", type=Path, default=Path("hmm-lava"), metavar="DIR",
                       help="where the artefacts, job.yaml and local-device.yaml go "
                            "(default: %(default)s)")
    lavap.add_argument("--kernel", metavar="SPEC", action="append",
                       help="the kernel, as for 'run' (once); it must have virtio-blk, "
                            "squashfs with zstd and overlayfs, as Debian's kernels do")
    lavap.add_argument("--modules-dir", type=Path, metavar="DIR",
                       help="with --kernel BZIMAGE, as for 'run'")
    lavap.add_argument("--test-hmm-source", type=Path, metavar="PATH",
                       help="build test_hmm from this source, as for 'run'")
    lavap.add_argument("--debug", dest="debug_kernel", action="store_true",
                       help="for a kernel source tree, as for 'run'")
    lavap.add_argument("--module", type=Path, metavar="KO",
                       help="ship this prebuilt test_hmm.ko, as for 'run'")
    lavap.add_argument("--mode", default="private", metavar="MODE",
                       help="private, coherent or all, as for 'run' (default: %(default)s)")
    lavap.add_argument("-k", dest="keyword", metavar="EXPR",
                       help="only tests matching this pytest -k expression")
    lavap.add_argument("--suite", action="append", dest="suites", metavar="PATH",
                       help="a suite file or directory under the project, repeatable "
                            f"(default: {' '.join(run.DEFAULT_SUITES)})")
    lavap.add_argument("--test-timeout", type=int, default=DEFAULT_TEST_TIMEOUT,
                       metavar="SECONDS",
                       help="pytest-timeout for each test in the guest (default: %(default)s)")
    lavap.add_argument("--run-timeout", type=int, default=5400, metavar="SECONDS",
                       help="the timeout of the job's test action (default: %(default)s)")
    lavap.add_argument("--cpus", type=int, default=2,
                       help="guest vCPUs (default: %(default)s)")
    lavap.add_argument("--memory", type=int, metavar="MIB", dest="memory_mib",
                       help="guest memory in MiB, as for 'run'")
    lavap.add_argument("--accel", default="auto", metavar="ACCEL",
                       help="tcg: the job asks the device for TCG (context no_kvm); auto or "
                            "kvm leave it to the device (default: %(default)s)")
    lavap.add_argument("--mirror", default=debian.DEFAULT_MIRROR, metavar="URL",
                       help="Debian mirror for kernels and the guest root "
                            "(default: %(default)s)")
    lavap.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="downloads and builds, as for 'run'")
    lavap.add_argument("--dry-run", action="store_true",
                       help="print the commands it would execute, and execute none")


def lava_request(args: argparse.Namespace) -> lavaprep.LavaJobRequest:
    if len(args.kernel or []) > 1:
        raise UsageError("lava-job writes a job for one kernel", "give --kernel once")
    output = args.output.resolve()
    options = run.RunOptions(
        results_dir=output, cache_dir=args.cache_dir or default_cache_dir(),
        kernel=args.kernel[0] if args.kernel else None, mode=args.mode, keyword=args.keyword,
        suites=tuple(args.suites or run.DEFAULT_SUITES), mirror=args.mirror, accel=args.accel,
        cpus=args.cpus, memory_mib=args.memory_mib, test_timeout=args.test_timeout,
        run_timeout=args.run_timeout, module=args.module, modules_dir=args.modules_dir,
        test_hmm_source=args.test_hmm_source, debug_kernel=args.debug_kernel,
        dry_run=args.dry_run)
    return lavaprep.LavaJobRequest(options, output, args.artifact_url)


def options_from(args: argparse.Namespace) -> run.RunOptions:
    if getattr(args, "resume", None) is not None:
        return run.load_options(args.resume.resolve())
    benchmark = args.command == "bench"
    pairs = bench_pairs(args) if benchmark else 0
    return run.RunOptions(
        results_dir=args.results.resolve(), cache_dir=args.cache_dir or default_cache_dir(),
        kernel=args.kernel[0] if args.kernel else None, mode=args.mode,
        keyword=(BENCH_PAIRS_KEYWORD if pairs else BENCH_KEYWORD) if benchmark
        else args.keyword,
        suites=(BENCH_PAIRS_SUITES if pairs else BENCH_SUITES) if benchmark
        else tuple(args.suites or run.DEFAULT_SUITES),
        bench_pairs=pairs,
        benchmark=benchmark, mirror=args.mirror, qemu=args.qemu,
        accel=args.accel, cpus=args.cpus, memory_mib=args.memory_mib,
        test_timeout=args.test_timeout,
        run_timeout=(run.RUN_TIMEOUT_PER_REPETITION * getattr(args, "repeat", 1)
                     if args.run_timeout is None else args.run_timeout),
        # In pairs the C side runs inside the Python suite, not after it.
        module=args.module, reference=args.reference and not pairs,
        extra_kmods=tuple(p.resolve() for p in getattr(args, "extra_kmods", [])),
        debug_symbols=getattr(args, "debug_symbols", False),
        modules_dir=args.modules_dir, test_hmm_source=args.test_hmm_source,
        debug_kernel=args.debug_kernel, dry_run=args.dry_run,
        repeat=getattr(args, "repeat", 1),
        known_issues=tuple(p.resolve() for p in args.known_issues),
        strict_known_issues=args.strict_known_issues,
        baseline=args.baseline.resolve() if args.baseline else None,
        shard=getattr(args, "shard", None),
        durations=args.durations.resolve() if getattr(args, "durations", None) else None,
        jobs=getattr(args, "jobs", 1), kcidb_origin=args.kcidb_origin,
        guest_root=args.guest_root,
        seed=exploration.parse_seed(getattr(args, "seed", None)),
        explore=getattr(args, "explore", exploration.DEFAULT_EXPLORE),
        stateful_unsafe=getattr(args, "stateful_unsafe", False),
        target=getattr(args, "target", "qemu"),
        yes_this_host=getattr(args, "yes_this_host", False),
        spm_addrs=tuple(_spm_address(t) for t in getattr(args, "spm_addrs", [])))


def bench_pairs(args: argparse.Namespace) -> int:
    if args.pairs is not None and not args.reference:
        raise UsageError("--pairs needs --reference: the pairs are of Python and C tables",
                         "add --reference, or drop --pairs")
    if args.pairs is not None and args.pairs < 1:
        raise UsageError(f"--pairs {args.pairs}: a comparison needs at least one pair",
                         f"give --pairs 1 or more (default {DEFAULT_BENCH_PAIRS})")
    if not args.reference:
        return 0
    return DEFAULT_BENCH_PAIRS if args.pairs is None else int(args.pairs)


def explicit_options(argv: Sequence[str]) -> list[str]:
    """The options given on the command line (for --resume, which takes no other)."""
    parser = build_parser()
    for action in _all_actions(parser):
        action.default = argparse.SUPPRESS
    return sorted(vars(parser.parse_args(argv)))


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += sub._actions
    return actions


def _raise_interrupted(number: int, frame: object) -> None:
    raise Interrupted(number, signal.Signals(number).name)


def main(argv: Sequence[str] | None = None) -> int:
    handlers = {number: signal.signal(number, _raise_interrupted)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def _main(argv: list[str]) -> int:
    progress = Progress()
    try:
        args = build_parser().parse_args(argv)
        if args.command == "merge":
            return _merge(args, progress)
        if args.command == "reproduce":
            return _reproduce(args, progress)
        if args.command == "host-check":
            return _host_check(args, progress)
        if args.command not in ("run", "bench", "bisect", "lava-job"):
            raise UsageError("no command given", "try 'python -m harness run --help'")
        if args.command == "lava-job":
            return _lava_job(args, progress)
        if getattr(args, "resume", None) is not None and \
                (extra := [o for o in explicit_options(argv) if o not in ("command", "resume")]):
            raise UsageError(f"--resume takes no other option (given: {', '.join(extra)})",
                             "the run continues with the options it was started with; give "
                             "only --resume DIR")
        options = options_from(args)
        runner = CommandRunner(dry_run=options.dry_run)
        if args.command == "bisect":
            return _bisect(args, options, runner, progress)
        if len(args.kernel or []) > 1:
            return _matrix(args, options, runner, progress)
        if getattr(args, "whole_suite", False):
            return _bench_whole_suite(args, options, runner, progress)
        if getattr(args, "startup", False):
            return _bench_startup(args, options, runner, progress)
        if options.target == "host":
            report = hostrun.run_on_host(options, runner, progress)
        elif options.spm_addrs or options.yes_this_host:
            raise UsageError("--spm-addr and --yes-this-host go with --target host",
                             "add --target host, or drop them")
        else:
            report = parallel.run_jobs(options, runner, progress) if options.jobs > 1 \
                else run.run(options, runner, progress)
    except HarnessError as error:
        print(f"error: {error.problem}", file=sys.stderr)
        if error.fix:
            print(f"  fix: {error.fix}", file=sys.stderr)
        return EXIT_HARNESS
    except Interrupted as stop:
        if isinstance(stop.report, RunReport):
            progress.say(summary(stop.report))
        print(f"stopped by {stop.signal_name}; the finished tests' results are written"
              + (f": continue with --resume {options.results_dir}" if "options" in locals()
                 else ""), file=sys.stderr)
        return 128 + stop.signal_number
    if options.dry_run:
        return EXIT_PASSED
    progress.say(summary(report))
    progress.say(f"results: {options.results_dir}/results.json, junit.xml, console.log")
    return EXIT_PASSED if report.passed() else EXIT_FAILED


def _matrix(args: argparse.Namespace, options: run.RunOptions, runner: CommandRunner,
            progress: Progress) -> int:
    if args.command != "run" or options.module or options.modules_dir:
        raise UsageError("--kernel more than once goes with 'run', without --module and "
                         "--modules-dir (they belong to one kernel)",
                         "run one kernel at a time for those")
    if options.jobs > 1:
        raise UsageError("--jobs runs one kernel's shards; with --kernel more than once the "
                         "kernels run one after the other", "run each kernel with --jobs on "
                         "its own, then 'merge --allow-mixed' their results")
    columns = matrix.run_matrix(options, args.kernel, runner, progress)
    if options.dry_run:
        return EXIT_PASSED
    progress.say("test x kernel:\n" + matrix.table(columns))
    progress.say(f"results: {options.results_dir}/results.json, one directory per kernel")
    verdict = matrix.status(columns)
    return {"passed": EXIT_PASSED, "failed": EXIT_FAILED}.get(verdict, EXIT_HARNESS)


def _bench_startup(args: argparse.Namespace, options: run.RunOptions, runner: CommandRunner,
                   progress: Progress) -> int:
    if args.rounds < 1:
        raise UsageError(f"--rounds {args.rounds} is not a positive count",
                         "give at least one round, e.g. --rounds 3")
    if args.reference:
        raise UsageError("--startup measures the harness's own start-up; --reference adds "
                         "the C selftest after the tests", "give one of them")
    options = replace(options, keyword=None, suites=run.DEFAULT_SUITES)
    startupbench.bench_startup(options, args.rounds, runner, progress)
    return EXIT_PASSED


def _bench_whole_suite(args: argparse.Namespace, options: run.RunOptions,
                       runner: CommandRunner, progress: Progress) -> int:
    if args.rounds < 1:
        raise UsageError(f"--rounds {args.rounds} is not a positive count",
                         "give at least one pair, e.g. --rounds 3")
    if args.startup or args.reference:
        raise UsageError("--whole-suite times the ported suites against the C selftest in a "
                         "guest of its own; --startup and --reference measure other things",
                         "give one of them")
    wholesuitebench.bench_whole_suite(options, args.rounds, runner, progress)
    return EXIT_PASSED


def _merge(args: argparse.Namespace, progress: Progress) -> int:
    report = merge.merge_directories(args.sources, args.results, args.allow_mixed,
                                     args.baseline, args.strict_known_issues)
    progress.say(summary(report))
    if report.baseline:
        progress.say(f"compared with the baseline {report.baseline}:\n" + compare.table(
            [compare.Row(**c) for c in report.baseline_changes]))
    progress.say(f"merged {len(args.sources)} results into {args.results}/results.json, "
                 "junit.xml, results.ktap, results.kcidb.json")
    return EXIT_PASSED if report.passed() else EXIT_FAILED


def _reproduce(args: argparse.Namespace, progress: Progress) -> int:
    if args.budget < 0:
        raise UsageError(f"--budget {args.budget}: a number of boots cannot be negative",
                         f"give --budget 0 or more (default {replay.DEFAULT_BUDGET})")
    found = replay.reproduce(args.results.resolve(), args.budget, CommandRunner(), progress)
    verdict = (f"reproduced: {found.minimal} of {found.steps} steps kill a fresh guest"
               if found.confirmed else
               f"not reproduced: the {found.steps} steps ran to their end in a fresh guest")
    progress.say(f"{verdict} ({found.boots} boots, {found.seconds:.0f} s); "
                 f"{found.directory}/repro.c, test_reproducer.py, minimal.json")
    return EXIT_PASSED if found.confirmed else EXIT_FAILED


def _spm_address(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"--spm-addr {text!r} is not an address",
                         "give a physical address, e.g. --spm-addr 0x100000000") from None


def _host_check(args: argparse.Namespace, progress: Progress) -> int:
    addresses = tuple(_spm_address(text) for text in args.spm_addrs)
    if addresses and args.mode == "private":
        raise UsageError("--spm-addr is for device-coherent memory",
                         "add --mode coherent or --mode all, or drop --spm-addr")
    facts = hostfacts.gather(CommandRunner(log=sys.stderr))
    assessment = hostcheck.assess(facts, coherent=args.mode != "private",
                                  spm_addresses=addresses)
    if args.mode != "private":
        progress.say(hostcheck.describe_found(assessment.spm_found))
    progress.say(hostcheck.describe(assessment))
    if args.json:
        args.json.write_text(json.dumps(assessment.as_json(), indent=2) + "\n")
    if not assessment.ready:
        raise assessment.refusal()
    return EXIT_PASSED


def _bisect(args: argparse.Namespace, options: run.RunOptions, runner: CommandRunner,
            progress: Progress) -> int:
    if len(args.kernel or []) > 1:
        raise UsageError("bisect tests one kernel", "give --kernel once, or not at all")
    report = bisect.bisect(bisect.BisectOptions(args.tree, args.good, args.bad, options),
                           runner, progress)
    if options.dry_run:
        return EXIT_PASSED
    progress.say("bisection:\n" + bisect.text(report))
    progress.say(f"results: {options.results_dir}/bisect.json, bisect-log.txt, steps/")
    return EXIT_PASSED if report.culprit else EXIT_HARNESS


def _lava_job(args: argparse.Namespace, progress: Progress) -> int:
    request = lava_request(args)
    runner = CommandRunner(dry_run=request.run_options.dry_run)
    lavaprep.prepare(request, runner, progress)
    if not runner.dry_run:
        progress.say(f"LAVA job: {request.output_dir}/job.yaml; serve the artefacts in "
                     f"{request.output_dir} at {request.artifact_url}")
    return EXIT_PASSED
