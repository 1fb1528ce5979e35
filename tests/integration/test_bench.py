"""The benchmarks against the C selftest, one pair each, on the default kernel: what they
compare and report, not how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm


def bench(results: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "--results", str(results),
                           *argv], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1500)
    print(done.stderr[-6000:])
    return done


def test_whole_suite_times_the_ported_suites_against_hmm_tests_in_a_guest_of_its_own(
        tmp_path: Path) -> None:
    done = bench(tmp_path / "r", "--whole-suite", "--rounds", "1")
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((tmp_path / "r" / "whole-suite.json").read_text())
    (pair,) = summary["pairs"]
    # The same cases on both sides: hmm-tests' private variants of both fixtures, and the
    # suites that port them; gup_test's driver is not in the guest, so both skip that case.
    assert pair["c_outcomes"].get("skipped") == pair["python_outcomes"].get("skipped") == 1
    assert sum(pair["c_outcomes"].values()) == sum(pair["python_outcomes"].values()) >= 38
    assert 0 < pair["c_tests_seconds"] < pair["c_seconds"]
    assert 0 < pair["python_tests_seconds"] < pair["python_seconds"]
    tap = (tmp_path / "r" / "c-selftest" / "guest" / "c-selftest-1.tap").read_text()
    assert "ok 1 hmm.hmm_device_private.open_close" in tap
    assert "hmm2.hmm2_device_private.double_map" in tap and "coherent" not in tap
    assert "median: harness run" in done.stderr


def test_reference_pairs_python_and_c_tables_in_one_boot(tmp_path: Path) -> None:
    done = bench(tmp_path / "r", "--reference", "--pairs", "1")
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "r" / "results.json").read_text())
    rows = report["benchmark"]["pairs"]["private"]
    assert len(rows) == 28  # 7 sizes, with and without THP, both directions
    assert all(len(row["ratios"]) == 1 and row["python_gbps"][0] > 0 and row["c_gbps"][0] > 0
               for row in rows)
    assert {row["finding"] for row in rows} == {"too few pairs (fewer than 3)"}
    # The C side ran inside the pair, not again after the suites.
    assert report["c_selftest"] == [] and report["reference"] == []
    assert "in 1 interleaved pair (" in done.stderr
