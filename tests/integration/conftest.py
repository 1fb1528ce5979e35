"""Integration tests boot the default kernel in QEMU for real; they share the user's cache so
the kernel and guest root are fetched once."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT

# Run inside the guest by these tests, not by the host.
collect_ignore = ["guest_suites"]


class HarnessRun:
    def __init__(self, proc: subprocess.CompletedProcess[str], results: Path) -> None:
        self.status = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.results = results

    def json(self) -> dict:
        return json.loads((self.results / "results.json").read_text())

    def outcomes(self) -> dict[str, str]:
        return {t["nodeid"]: t["outcome"] for t in self.json()["tests"]}


@pytest.fixture
def harness_run(tmp_path):
    def run(*argv: str) -> HarnessRun:
        results = tmp_path / "results"
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--results",
                               str(results), *argv], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=3000)
        print(proc.stderr[-6000:])
        return HarnessRun(proc, results)
    return run
