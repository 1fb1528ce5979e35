"""`python -m harness run --target host` inside a coherent guest, playing a vendor's machine.

With the harness's test_hmm unloaded, the run inside builds test_hmm from 7.2.13's own
lib/test_hmm.c against the guest root's kernel headers with the kernel's compiler, loads it
with the soft-reserved memory it finds, runs a selection of the suites in both modes, and
unloads it. Not a default suite: it runs a harness inside the harness.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.guest import protocol

DATA = Path(protocol.GUEST_PROJECT) / "tests/unit/data"
# Cases that pass on 7.2.13 (or fail as known-issues.toml says) without a kernel warning:
# the kernel log of the run inside is also this test's, so a warning there would be its own.
SELECTION = "test_anon_read or test_anon_write or test_migrate_fault or test_exclusive_mprotect"


# Under TCG, building test_hmm and its binding inside the guest takes minutes.
@pytest.mark.timeout(1200)
def test_a_run_on_the_host_builds_loads_and_runs_the_suites(test_hmm_unloaded: list[int],
                                                            tmp_path: Path) -> None:
    source = tmp_path / "lib"
    source.mkdir()
    (source / "test_hmm.c").write_bytes(
        lzma.decompress((DATA / "linux-7.2.13-lib-test_hmm.c.xz").read_bytes()))
    shutil.copyfile(DATA / "linux-7.2.13-lib-test_hmm_uapi.h", source / "test_hmm_uapi.h")
    results = tmp_path / "results"
    done = subprocess.run(
        ["python3", "-m", "harness", "run", "--target", "host", "--yes-this-host",
         "--mode", "all", "--test-hmm-source", str(source), "--suite", "tests/guest/test_hmm.py",
         "-k", SELECTION, "--results", str(results)],
        cwd=protocol.GUEST_PROJECT, capture_output=True, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=1100)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    report: dict[str, Any] = json.loads((results / "results.json").read_text())
    outcomes = {t["nodeid"]: t["outcome"] for t in report["tests"]}
    # The verdict is the one a guest gets: known-issues.toml applies on the host as well.
    unexplained = {t["nodeid"]: t["outcome"] for t in report["tests"] if t["outcome"] != "passed"
                   and not (t["outcome"] == "known-failure" and t["known_issue_id"])}
    assert not unexplained and "passed" in outcomes.values(), outcomes
    variants = {nodeid.rsplit("[", 1)[1].rstrip("]") for nodeid in outcomes}
    assert variants == {"private", "coherent"}, outcomes
    assert report["host"]["spm"]["addresses"] == [f"{a:#x}" for a in test_hmm_unloaded]
    assert report["accelerator"] == "host"
    # The journal the run kept: every test's markers in the kernel log it copied from
    # /dev/kmsg, and every result in the events file.
    log = (results / "console.log").read_text()
    assert all(f"{protocol.MARKER_PREFIX} end " in log and nodeid in log for nodeid in outcomes)
    events = [json.loads(line) for line in (results / "events.jsonl").read_text().splitlines()]
    assert len([e for e in events if e["event"] == "test-result"]) == len(outcomes)
    assert (results / "host-build" / "test_hmm.ko").is_file()
