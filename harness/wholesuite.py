"""Pure: the ported suites as a warm run against the kernel's C selftest in the same kind of
guest (`bench --whole-suite`): the C guest's init script, what its TAP says, the table."""

from __future__ import annotations

import shlex
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from harness.guest import protocol, reference

# The suites that port hmm-tests.c case for case; the others have no C twin.
PORTED_SUITES = ("tests/guest/test_hmm.py", "tests/guest/test_hmm2.py",
                 "tests/guest/test_hmm_benchmark.py")
SCRIPT_NAME = "c-selftest.sh"
TAP_NAME = "c-selftest.tap"
# The guest's uptime when hmm-tests starts and when it ends, one per line.
TIMES_NAME = "c-selftest.times"


def selftest_variants(mode: str) -> list[str]:
    """hmm-tests' variants (`-v NAME`) of both fixtures for a memory mode."""
    models = ["private", "coherent"] if mode == "all" else [mode]
    return [f"{fixture}_device_{model}" for model in models for fixture in ("hmm", "hmm2")]


def c_selftest_script(module_params: tuple[str, ...], mode: str) -> str:
    """The C selftest as its users run it in a VM: load test_hmm, run hmm-tests, power off.
    The guest root's shell is PID 1 here; the initramfs mounted everything."""
    variants = " ".join(f"-v {v}" for v in selftest_variants(mode))
    params = " ".join(shlex.quote(p) for p in module_params)
    results = protocol.GUEST_RESULTS
    return (
        "#!/bin/sh\n"
        "cd /tmp\n"
        f"insmod {protocol.MODULE_PATH} {params}\n"
        f"cut -d' ' -f1 /proc/uptime > {results}/{TIMES_NAME}\n"
        f"{protocol.HMM_TESTS} {variants} > {results}/{TAP_NAME} 2>&1\n"
        f"cut -d' ' -f1 /proc/uptime >> {results}/{TIMES_NAME}\n"
        "sync\n"
        "exec /bin/busybox poweroff -f\n")


def tap_outcomes(tap: str) -> Counter[str]:
    """passed / failed / skipped, counted from hmm-tests' result lines."""
    return Counter(result[1] for line in tap.splitlines()
                   if (result := reference.tap_result(line)) is not None)


def uptimes(text: str) -> tuple[float, float] | None:
    """(hmm-tests started, hmm-tests ended) on the C guest's clock."""
    values = [float(v) for v in text.split()]
    return (values[0], values[1]) if len(values) == 2 else None


@dataclass(frozen=True)
class Pair:
    python_seconds: float  # the harness's run, command to exit
    c_seconds: float  # the C selftest's guest, QEMU start to exit
    python_outcomes: dict[str, int]
    c_outcomes: dict[str, int]
    python_tests_seconds: float  # the guest's uptime from the first test's start to the last result
    c_tests_seconds: float  # hmm-tests from its start to its end
    python_boots: int = 1  # more than one: a guest died before user space and was booted again
    c_boots: int = 1


def summarize(pairs: list[Pair]) -> dict[str, Any]:
    python = statistics.median(p.python_seconds for p in pairs)
    c = statistics.median(p.c_seconds for p in pairs)
    ratios = [p.python_seconds / p.c_seconds for p in pairs]
    lines = [f"{'pair':>4}  {'harness run':>11}  {'C selftest':>10}  {'ratio':>5}  "
             f"{'tests alone':>13}  outcomes"]
    for number, pair in enumerate(pairs, start=1):
        lines.append(f"{number:4}  {pair.python_seconds:10.1f}s  {pair.c_seconds:9.1f}s  "
                     f"{pair.python_seconds / pair.c_seconds:5.2f}  "
                     f"{pair.python_tests_seconds:5.1f}/{pair.c_tests_seconds:5.1f}s  "
                     f"Python {describe(pair.python_outcomes)}; C {describe(pair.c_outcomes)}"
                     + (f" ({pair.python_boots} boots for the harness's run)"
                        if pair.python_boots > 1 else "")
                     + (f" ({pair.c_boots} boots for the C selftest)"
                        if pair.c_boots > 1 else ""))
    python_tests = statistics.median(p.python_tests_seconds for p in pairs)
    c_tests = statistics.median(p.c_tests_seconds for p in pairs)
    lines.append(f"median: harness run {python:.1f} s, C selftest {c:.1f} s, "
                 f"{python / c:.2f}x (pairs from {min(ratios):.2f}x to {max(ratios):.2f}x); "
                 f"the tests alone {python_tests:.1f} s against {c_tests:.1f} s")
    return {"pairs": [asdict(p) for p in pairs], "python_median": python, "c_median": c,
            "ratio_median": python / c, "ratio_min": min(ratios), "ratio_max": max(ratios),
            "python_tests_median": python_tests, "c_tests_median": c_tests,
            "table": "\n".join(lines)}


def tests_span(events: list[dict[str, Any]]) -> float:
    """The guest's uptime from the first test's start to the last result of a run."""
    starts = [e["uptime"] for e in events if e.get("event") == "test-start"]
    ends = [e["uptime"] for e in events if e.get("event") == "test-result"]
    return max(ends) - min(starts) if starts and ends else 0.0


def describe(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items())) or "none"
