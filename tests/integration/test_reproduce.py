"""A stateful sequence that kills the guest, replayed, shrunk and written as a C program.

`--stateful-unsafe` lets the stateful suite make the calls its model knows crash 7.2's
test_hmm (known-issues.toml: own-private-page-fault); `reproduce` must then confirm the crash
in a fresh guest, shrink the sequence and write reproducers that compile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm

UAPI_HEADER = PROJECT_ROOT / "tests/unit/data/linux-7.2.13-lib-test_hmm_uapi.h"


def test_a_crash_of_the_unsafe_stateful_suite_is_reproduced_and_shrunk(
        harness_run, tmp_path: Path) -> None:
    crashed = harness_run("--suite", "tests/guest/test_stateful.py", "--stateful-unsafe",
                          "--explore", "300", "--seed", "11")
    outcomes = crashed.outcomes()
    assert list(outcomes.values()) == ["crashed"], \
        f"the unsafe suite was to crash the guest: {outcomes}\n{crashed.output[-2000:]}"

    proc = subprocess.run([sys.executable, "-m", "harness", "reproduce", str(crashed.results),
                           "--budget", "3"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1800)
    output = proc.stdout + proc.stderr  # the progress lines go to stderr
    print(output[-4000:])
    assert proc.returncode == 0, output[-6000:]
    assert "reproduced:" in output
    out = crashed.results / "reproducer"
    recorded = json.loads((out / "sequence.json").read_text())
    minimal = json.loads((out / "minimal.json").read_text())
    assert 1 <= len(minimal["steps"]) <= len(recorded["steps"])
    assert minimal["steps"][-1] == recorded["steps"][-1]
    tries = sorted(out.glob("replay-*"))
    assert 2 <= len(tries) <= 4  # the confirmation and at most --budget 3 more

    if shutil.which("gcc"):
        (tmp_path / "test_hmm_uapi.h").write_bytes(UAPI_HEADER.read_bytes())
        built = subprocess.run(["gcc", "-Wall", "-Werror", "-I", str(tmp_path), "-o",
                                str(tmp_path / "repro"), str(out / "repro.c")],
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
    compile((out / "test_reproducer.py").read_text(), "test_reproducer.py", "exec")
