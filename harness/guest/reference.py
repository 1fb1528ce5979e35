"""Runs the kernel's own C selftest (hmm-tests) in the guest, one case at a time, as a reference.

Each case runs as `hmm-tests -r FIXTURE.VARIANT.TEST` between kernel-log markers, and reports
through the same events as the pytest plugin, so the host attributes kernel messages and
survives crashes the same way for both.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable

from harness import reference
from harness.guest import protocol

HMM_TESTS = protocol.HMM_TESTS
NODEID_PREFIX = protocol.C_NODEID_PREFIX
# Markers need distinct sequence numbers from the pytest plugin's.
FIRST_SEQ = 100000
KSFT_SKIP = 4
_TAP_RESULT = re.compile(r"^(ok|not ok) \d+ (\S+)(?:\s+#\s*(SKIP|XFAIL|XPASS)?\s*(.*))?$")
_VARIANT_MODES = {"private": "_device_private", "coherent": "_device_coherent"}


def parse_listing(text: str) -> list[str]:
    """FIXTURE.VARIANT.TEST names from `hmm-tests -l` (three columns; a blank cell means the
    fixture or variant goes on; variants and tests of one fixture combine)."""
    cases: list[str] = []
    fixture, variants, tests = "", list[str](), list[str]()

    def flush() -> None:
        for variant in variants or [""]:
            cases.extend(".".join(p for p in (fixture, variant, test) if p) for test in tests)

    for line in text.splitlines():
        # "#" lines are the header and diagnostics (hugetlb detection and the like)
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("-----"):
            flush()
            fixture, variants, tests = "", [], []
            continue
        name, variant, test = line[:21].strip(), line[21:47].strip(), line[47:].strip()
        fixture = name or fixture
        if variant:
            variants.append(variant)
        if test:
            tests.append(test)
    flush()
    return cases


def select(cases: Iterable[str], mode: str) -> list[str]:
    suffixes = [suffix for name, suffix in _VARIANT_MODES.items() if mode in (name, "all")]
    return [case for case in cases if any(case.split(".")[1].endswith(s) for s in suffixes)
            if case.count(".") == 2]


def matches_keyword(case: str, keyword: str | None) -> bool:
    """pytest's -k semantics, applied to the names the Python twin of the case would have:
    test_NAME, the module test_FIXTURE.py and the variant id (private/coherent)."""
    if not keyword:
        return True
    from _pytest.mark.expression import Expression

    fixture, variant, test = case.split(".")
    mode = next((m for m, suffix in _VARIANT_MODES.items() if variant.endswith(suffix)), "")
    names = [f"test_{test}", f"test_{fixture}.py", mode]

    def matches(word: str, /, **_: str | int | bool | None) -> bool:
        return any(word.lower() in name.lower() for name in names)

    return Expression.compile(keyword).evaluate(matches)


def tap_result(line: str) -> tuple[str, str, str] | None:
    """(case, outcome, reason) of one of hmm-tests' TAP result lines; None for other lines."""
    match = _TAP_RESULT.match(line.strip())
    if match is None:
        return None
    verdict, case, directive, reason = match.groups()
    if directive == "SKIP":
        return case, "skipped", reason or "skipped by the C selftest"
    return case, ("passed" if verdict == "ok" else "failed"), ""


def outcome(output: str, returncode: int, case: str) -> tuple[str, str]:
    """(outcome, reason) from the case's TAP line, else from its exit status."""
    for line in output.splitlines():
        result = tap_result(line)
        if result is not None and result[0] == case:
            return result[1], result[2]
    if returncode == KSFT_SKIP:
        return "skipped", "skipped by the C selftest"
    # `-r` with a name it does not know runs nothing and still exits 0.
    return "error", f"hmm-tests printed no result line for {case} (exit status {returncode})"


def twins_only(cases: list[str], python_nodeids: list[str]) -> list[str]:
    """The cases whose Python twin is in the suites being run."""
    keys = {reference.python_key(n) for n in python_nodeids}
    return [c for c in cases if reference.c_key(NODEID_PREFIX + c) in keys]


def run(events: protocol.EventChannel, mode: str, keyword: str | None,
        deselect: Iterable[str], timeout: float) -> None:
    """Run the selected C cases, sending collected/test-start/test-result events."""
    # The listing goes to stderr; stdout only has diagnostics.
    listing = subprocess.run([HMM_TESTS, "-l"], capture_output=True, text=True)
    skip = set(deselect)
    with open(protocol.SUITE_FILE) as suite:
        python_nodeids = json.load(suite)
    cases = [c for c in twins_only(select(parse_listing(listing.stderr), mode), python_nodeids)
             if NODEID_PREFIX + c not in skip and matches_keyword(c, keyword)]
    events.send("collected", nodeids=[NODEID_PREFIX + c for c in cases], source="c-selftest")
    for seq, case in enumerate(cases, start=FIRST_SEQ):
        nodeid = NODEID_PREFIX + case
        protocol.write_kmsg(protocol.begin_marker(seq, nodeid))
        events.send("test-start", nodeid=nodeid, seq=seq, timeout=timeout)
        start = time.monotonic()
        try:
            done = subprocess.run([HMM_TESTS, "-r", case], capture_output=True, text=True,
                                  timeout=timeout, cwd="/tmp")
            result, reason = outcome(done.stdout, done.returncode, case)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            result, reason = "failed", f"no result within {timeout:.0f} s"
            output = (expired.stdout or b"").decode(errors="replace") \
                if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        duration = time.monotonic() - start
        protocol.write_kmsg(protocol.end_marker(seq, nodeid))
        message = reason + ("\n" if reason else "") + output[-20000:]
        events.send("test-result", nodeid=nodeid, seq=seq, outcome=result,
                    duration=duration, message=message)
