"""Integration tests boot the default kernel in QEMU for real; they share the user's cache so
the kernel and guest root are fetched once. Each test gets what it needs through the harness
itself (the `default_kernel` fixture), so none depends on another having run first."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import run
from harness.commands import CommandRunner
from harness.paths import PROJECT_ROOT, default_cache_dir
from harness.progress import Progress

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


@pytest.fixture(scope="session")
def default_kernel(tmp_path_factory) -> run.Prepared:
    """The default kernel, its guest root and test_hmm, built (or found in the cache) the way
    `harness run` builds them."""
    options = run.RunOptions(results_dir=tmp_path_factory.mktemp("prepare"),
                             cache_dir=default_cache_dir())
    return run.prepare(options, CommandRunner(), Progress())
