"""`run --target host` whose second test hangs the kernel, inside a coherent guest.

The sleeping task is reported by the kernel's hung-task detector (30 s in the harness's
guest); the run on the "host" stops the test, dumps the tasks with sysrq, writes its reports
and tells the user to reboot. The reports of the kernel come inside the markers of the run
inside, so the harness outside does not take them for its own test's. Then this test wakes
the sleeper, so the guest goes on. Needs --extra-kmod tests/kmod/hmm_faults; not a default
suite.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.guest import faults, protocol

SUITE = "tests/guest/vendor/machine_hangs_midway.py"


def wait_for_the_killed_pytest_to_exit() -> None:
    """Woken, the killed pytest exits and lets go of what it held open (test_hmm's devices
    among them), so the fixture can load test_hmm again."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            SUITE.encode() in cmdline for cmdline in command_lines()):
        time.sleep(0.2)


def command_lines() -> list[bytes]:
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                lines.append(f.read())
        except OSError:
            continue
    return lines


@pytest.mark.timeout(1200)
def test_a_test_that_hangs_the_kernel_is_stopped_and_the_run_reports_it(
        test_hmm_unloaded: list[int], tmp_path: Path) -> None:
    faults.load()
    source = tmp_path / "lib"
    source.mkdir()
    data = Path(protocol.GUEST_PROJECT) / "tests/unit/data"
    (source / "test_hmm.c").write_bytes(
        lzma.decompress((data / "linux-7.2.13-lib-test_hmm.c.xz").read_bytes()))
    shutil.copyfile(data / "linux-7.2.13-lib-test_hmm_uapi.h", source / "test_hmm_uapi.h")
    results = tmp_path / "results"
    started = time.monotonic()
    # A file, not a pipe: the stuck pytest keeps its output open until it is woken, and
    # reading a pipe would wait for it.
    with open(tmp_path / "output.txt", "w+") as output_file:
        try:
            done = subprocess.run(
                ["python3", "-m", "harness", "run", "--target", "host", "--yes-this-host",
                 "--mode", "private", "--test-hmm-source", str(source), "--suite", SUITE,
                 "--results", str(results)],
                cwd=protocol.GUEST_PROJECT, stdout=output_file, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=1100)
        finally:
            with faults.Faults() as device:
                device.ioctl("WAKE")
            wait_for_the_killed_pytest_to_exit()
        output_file.seek(0)
        output = output_file.read()[-6000:]
    report = json.loads((results / "results.json").read_text())
    outcomes = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert {name: t["outcome"] for name, t in outcomes.items()} == {
        "test_before_the_hang[private]": "passed",
        "test_the_kernel_hangs": "hung",
        "test_after_the_hang": "not-run",
    }, output
    assert done.returncode == 1, output
    hung = outcomes["test_the_kernel_hangs"]
    assert "blocked for more than" in hung["message"], hung["message"]
    assert "reboot" in hung["message"]
    # The dumps the run asked for through /proc/sysrq-trigger, in the test's kernel log.
    assert any("Show Blocked State" in line for line in hung["kernel_log"]), hung["kernel_log"]
    assert any("--resume" in problem for problem in report["problems"]), report["problems"]
    # Not pytest-timeout's 120 s plus the 60 s grace: the kernel's own report stopped it.
    print(f"the run inside took {time.monotonic() - started:.0f} s")
