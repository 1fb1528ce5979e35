"""`run --target host` that the machine dies under, then `--resume`, inside a coherent guest.

The first test starts a run on the "host" (the guest) of machine_dies_midway.py, whose
second case crashes the kernel (sysrq c): the guest dies, and the harness outside boots a
fresh one. Its results directory is on the share that outlives the guest. The second test,
in the fresh guest, resumes that run: the finished case keeps its result, the one the machine
died in is crashed with what the journal held, and the last one runs. Not a default suite.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.guest import protocol

RESULTS = Path(protocol.GUEST_RESULTS) / "host-run"
SUITE = "tests/guest/vendor/machine_dies_midway.py"


def harness(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python3", "-m", "harness", "run", *argv],
                          cwd=protocol.GUEST_PROJECT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=1100)


@pytest.mark.timeout(1200)
def test_1_a_run_on_the_host_that_the_machine_dies_under(test_hmm_unloaded: list[int]) -> None:
    done = harness("--target", "host", "--yes-this-host", "--mode", "private",
                   "--test-hmm-source", str(Path(protocol.GUEST_RESULTS) / "src"),
                   "--suite", SUITE, "--results", str(RESULTS))
    raise AssertionError(f"the machine was to die in the run: {done.stderr[-3000:]}")


@pytest.fixture(scope="module", autouse=True)
def unpacked_test_hmm_source() -> None:
    """7.2.13's own lib/test_hmm.c, where both boots find it."""
    source = Path(protocol.GUEST_RESULTS) / "src"
    if (source / "test_hmm.c").is_file():
        return
    data = Path(protocol.GUEST_PROJECT) / "tests/unit/data"
    source.mkdir(exist_ok=True)
    (source / "test_hmm.c").write_bytes(
        lzma.decompress((data / "linux-7.2.13-lib-test_hmm.c.xz").read_bytes()))
    shutil.copyfile(data / "linux-7.2.13-lib-test_hmm_uapi.h", source / "test_hmm_uapi.h")


@pytest.mark.timeout(1200)
def test_2_resume_finishes_the_run(test_hmm_unloaded: list[int]) -> None:
    done = harness("--resume", str(RESULTS))
    output = done.stdout + done.stderr
    report = json.loads((RESULTS / "results.json").read_text())
    outcomes = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert {name: t["outcome"] for name, t in outcomes.items()} == {
        "test_before_the_crash[private]": "passed",
        "test_the_machine_dies[private]": "crashed",
        "test_after_the_crash[private]": "passed",
    }, output[-4000:]
    assert done.returncode == 1, output[-4000:]  # a crash fails the run
    crashed = outcomes["test_the_machine_dies[private]"]
    assert "the machine died while this test ran" in crashed["message"]
    sources = report["host"]["previous_boot_log"]
    assert set(sources) == {"journalctl -k -b -1", "/sys/fs/pstore"}, sources
    assert report["boots"] == 2
    # The journal of the first round: its events and the kernel log up to the death.
    assert (RESULTS / "events.jsonl").is_file() and (RESULTS / "events-2.jsonl").is_file()
    assert "test_the_machine_dies" in (RESULTS / "console.log").read_text()
