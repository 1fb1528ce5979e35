"""Runs the suites under LAVA's test shell; each test's result becomes a LAVA test case.

`python3 -m harness.guest.lava --mode private --test-timeout 120 [-k EXPR] tests/guest`, from
/hmm/project. pytest runs with the harness's plugin as in the harness's own guest; the
plugin's events arrive on a pipe and each `test-result` is reported at once with
`lava-test-case NAME --result pass|fail|skip`. A test during which the kernel printed an
error report (WARN, BUG, Oops, lockup, ...) is a fail whatever its own checks said, as in
`harness run`: the kernel log between the test's markers is read from /dev/kmsg.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, "/hmm/project")

from harness import console
from harness.guest import init, protocol

LAVA_RESULTS = {"passed": "pass", "skipped": "skip", "failed": "fail", "error": "fail"}
# LAVA keeps test case names of at most 100 characters; these are the safe ones.
NAME_LIMIT = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def case_name(nodeid: str) -> str:
    """tests/guest/test_hmm.py::test_open_close[private] -> test_hmm.test_open_close.private"""
    path, _, test = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    test = test.replace("::", ".").replace("[", ".").replace("]", "")
    name = _UNSAFE.sub("_", f"{module}.{test}" if test else module).strip("._")
    if len(name) > NAME_LIMIT:
        digest = hashlib.sha256(nodeid.encode()).hexdigest()[:8]
        name = f"{name[:NAME_LIMIT - 9]}-{digest}"
    return name


def lava_result(outcome: str, kernel_errors: list[str]) -> str:
    return "fail" if kernel_errors else LAVA_RESULTS.get(outcome, "fail")


class KernelLog:
    """What the kernel logged since the last drain, from /dev/kmsg (one record per read)."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None
        self.lines: list[str] = []

    def drain(self) -> None:
        while self.fd is not None:
            try:
                record = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return
            except OSError:  # EPIPE: records were overwritten before being read
                continue
            message = record.split(";", 1)[-1]
            # Continuation lines (dictionary entries) start with a space: not the message.
            self.lines.append(message.split("\n", 1)[0])

    def errors_of(self, nodeid: str) -> list[str]:
        """The kernel error reports between the test's markers; forgets what was read."""
        self.drain()
        log = console.parse("\n".join(self.lines))
        self.lines = []
        test = log.tests.get(nodeid)
        return console.distinct(console.kernel_errors(test.lines)) if test else []


def report(name: str, result: str) -> None:
    tool = shutil.which("lava-test-case")
    if tool is None:  # outside LAVA, say it plainly
        print(f"hmm-harness: {name}: {result}", flush=True)
        return
    subprocess.run([tool, name, "--result", result], check=False)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m harness.guest.lava")
    parser.add_argument("--mode", default="private", choices=("private", "coherent", "all"))
    parser.add_argument("--test-timeout", type=int, default=120)
    parser.add_argument("--module-param", action="append", default=[])
    parser.add_argument("-k", dest="keyword")
    parser.add_argument("suites", nargs="+")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    init.configure_kernel()
    os.makedirs(protocol.GUEST_RESULTS, exist_ok=True)
    plan = {"mode": args.mode, "test_timeout": args.test_timeout,
            "module_params": args.module_param, "keyword": args.keyword,
            "suites": args.suites, "round": 1}
    kernel_log = KernelLog()
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHON_COLORS": "0", "PYTHONPATH": protocol.GUEST_PYTHONPATH,
           protocol.EVENTS_FD_VARIABLE: str(write_end)}
    # pytest's own output goes to the console, so LAVA's log holds it.
    pytest = subprocess.Popen(init.pytest_argv(plan), env=env, cwd="/tmp",
                              pass_fds=(write_end,))
    os.close(write_end)
    reported = 0
    with os.fdopen(read_end) as events:
        for line in events:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "setup-error":
                print(f"hmm-harness: {event.get('message')}", flush=True)
                report("hmm-setup", "fail")
            elif kind == "test-result":
                nodeid = event["nodeid"]
                errors = kernel_log.errors_of(nodeid)
                for error in errors:
                    print(f"hmm-harness: {nodeid}: kernel error: {error}", flush=True)
                report(case_name(nodeid), lava_result(event.get("outcome", ""), errors))
                reported += 1
    status = pytest.wait()
    print(f"hmm-harness: pytest exit status {status}, {reported} test cases reported",
          flush=True)
    # Failed tests are in the test cases; only a run that could not test is a failed step.
    return 0 if status in (0, 1) else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
