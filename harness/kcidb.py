"""Pure: a run's report as a KCIDB v5.3 document (results.kcidb.json), what KernelCI collects.

The checkout and the build stand for the kernel: their ids hash its release, origin and
checked config, so every run of one kernel names the same build and KCIDB joins their tests.
A test's id adds the run's start time and its path, so no run overwrites another's tests,
and writing the same run again (after every test, or by `merge`) gives the same ids. A
known failure is a FAIL (the kernel is faulty) with an incident that links it to an issue
record holding the diagnosis, which is how KCIDB says "this failure is known".
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from harness import ktap
from harness.errors import UsageError
from harness.results import RunReport, TestOutcome

DEFAULT_ORIGIN = "hmm_harness"
ORIGIN_PATTERN = re.compile(r"^[a-z0-9_]+$")
LOG_EXCERPT_BYTES = 16384

# Each outcome's KCIDB status, and why (KCIDB: FAIL the tested code is faulty, ERROR the test
# did not complete through its own fault, MISS the harness did not run it, SKIP not
# applicable).
STATUS = {
    "passed": "PASS",
    "skipped": "SKIP",  # a missing option or ioctl: not applicable to this kernel
    "failed": "FAIL",  # a check of the test failed: the kernel or driver misbehaved
    "kernel-error": "FAIL",  # the kernel reported WARN/BUG/Oops/lockup while it ran
    "crashed": "FAIL",  # the kernel died while it ran
    "hung": "FAIL",  # the kernel stopped making progress in it
    "known-failure": "FAIL",  # still a faulty kernel; the incident says it is known
    "error": "ERROR",  # its setup or teardown failed: the kernel's state is unknown
    "interrupted": "MISS",  # the harness was stopped while it ran
    "not-run": "MISS",  # the guest was gone before its turn
}
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def check_origin(origin: str) -> None:
    if not ORIGIN_PATTERN.match(origin):
        raise UsageError(f"--kcidb-origin {origin!r} is not a KCIDB origin (lower-case letters, "
                         "digits and underscores only)", f"e.g. --kcidb-origin {DEFAULT_ORIGIN}")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _segment(text: str) -> str:
    return _PATH_UNSAFE.sub("_", text).strip("_") or "unnamed"


def test_path(nodeid: str, c_selftest: bool = False) -> str:
    """`hmm.VARIANT.CASE` (the C selftest's cases under `hmm.c_selftest`)."""
    parts = ["hmm", *(["c_selftest"] if c_selftest else []), ktap.variant_of(nodeid),
             ktap.case_name(nodeid)]
    return ".".join(_segment(p) for p in parts)


def log_excerpt(test: TestOutcome) -> str:
    """The message and the test's kernel log, cut to KCIDB's limit in bytes; the start is
    kept, since the first kernel report is the one that matters."""
    text = "\n".join([test.message.strip(), *test.kernel_log]).strip().replace("\0", "")
    data = text.encode()
    if len(data) <= LOG_EXCERPT_BYTES:
        return text
    return data[:LOG_EXCERPT_BYTES].decode(errors="ignore")


def to_kcidb(report: RunReport) -> dict[str, Any]:
    origin = report.kcidb_origin or DEFAULT_ORIGIN
    kernel = report.kernel
    identity = _digest(kernel.get("release", ""), kernel.get("origin", ""),
                       *sorted(f"{k}={v}" for k, v in report.kconfig.items()))
    checkout_id, build_id = f"{origin}:checkout-{identity}", f"{origin}:build-{identity}"
    run_id = _digest(report.started_at, ",".join(report.merged_from))
    checkout: dict[str, Any] = {"id": checkout_id, "origin": origin, "valid": True,
                                "misc": {"kernel_origin": kernel.get("origin", ""),
                                         "release": kernel.get("release", "")}}
    build: dict[str, Any] = {
        "id": build_id, "checkout_id": checkout_id, "origin": origin,
        "architecture": "x86_64", "status": "PASS",
        "config_name": kernel.get("origin", "") or "unknown",
        "misc": {"release": kernel.get("release", ""), "image": kernel.get("image", ""),
                 "kconfig": report.kconfig, "accelerator": report.accelerator,
                 "mode": report.mode}}
    if report.started_at:
        checkout["start_time"] = build["start_time"] = report.started_at
    tests: list[dict[str, Any]] = []
    issues: dict[str, dict[str, Any]] = {}
    incidents: list[dict[str, Any]] = []

    def add(path: str, status: str, **fields: Any) -> dict[str, Any]:
        record = {"id": f"{origin}:test-{run_id}-{len(tests)}-{path}", "build_id": build_id,
                  "origin": origin, "path": path, "status": status, **fields}
        tests.append(record)
        return record

    for test, c_selftest in [*((t, False) for t in report.tests),
                             *((t, True) for t in report.c_selftest)]:
        record = add(test_path(test.nodeid, c_selftest), STATUS[test.outcome],
                     duration=test.duration, log_excerpt=log_excerpt(test),
                     misc={"nodeid": test.nodeid, "outcome": test.outcome,
                           **({"actual_outcome": test.actual_outcome}
                              if test.actual_outcome else {}),
                           **({"known_issue": test.known_issue_id,
                               "known_issue_state": test.known_issue_state}
                              if test.known_issue_id else {})})
        if test.outcome == "known-failure":
            issue_id = f"{origin}:{_segment(test.known_issue_id)}"
            issues[issue_id] = {"id": issue_id, "version": 1, "origin": origin,
                                "comment": test.known_issue[:4000]}
            incidents.append({"id": f"{record['id']}-incident", "origin": origin,
                              "issue_id": issue_id, "issue_version": 1,
                              "test_id": record["id"], "present": True})
    for number, measurement in enumerate(report.measurements):
        if measurement.get("kind") == "thp_migration" and measurement.get("seconds"):
            name = (f"{measurement['label']}.{'thp' if measurement['thp'] else 'regular'}."
                    f"{measurement['direction']}")
            path = ".".join(["hmm", _segment(ktap.variant_of(measurement["nodeid"])),
                             "benchmark", *(_segment(p) for p in name.split("."))])
            add(path, "DONE", number={"value": measurement["size_bytes"]
                                      / measurement["seconds"], "unit": "B/s",
                                      "prefix": "binary"},
                misc={"measurement": number, "seconds": measurement["seconds"]})
    harness_problems = [*report.problems, *report.session_kernel_errors]
    if harness_problems:
        # Outside every test: the kernel's reports at boot or module load are the kernel's
        # fault (FAIL); the harness's own problems leave the kernel's state unknown (ERROR).
        add("hmm.session", "FAIL" if report.session_kernel_errors else "ERROR",
            log_excerpt="\n".join(harness_problems)[:LOG_EXCERPT_BYTES])
    document: dict[str, Any] = {"version": {"major": 5, "minor": 3}, "checkouts": [checkout],
                                "builds": [build], "tests": tests}
    if issues:
        document["issues"] = list(issues.values())
        document["incidents"] = incidents
    return document
