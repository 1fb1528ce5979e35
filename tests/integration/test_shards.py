"""--jobs and merge for real: the shards of a selection, run as two guests at once and merged,
report what the same selection run whole reports."""

import json
import subprocess
import sys

import kcidb_io
import pytest

from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm

SELECTION = "open_close or anon_read or anon_write_prot or migrate_fault or exclusive_cow " \
            "or snapshot or double_map"


def harness(*argv):
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=1800)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def report(results):
    return json.loads((results / "results.json").read_text())


def outcomes(data):
    return [(t["nodeid"], t["outcome"]) for t in data["tests"]]


def test_two_jobs_merge_into_the_report_of_the_whole_run(tmp_path):
    whole, jobs = tmp_path / "whole", tmp_path / "jobs"
    assert harness("run", "-k", SELECTION, "--cpus", "1", "--results", str(whole)).returncode \
        == 0
    parallel = harness("run", "-k", SELECTION, "--jobs", "2", "--results", str(jobs))
    assert parallel.returncode == 0
    assert "shard 1/2 | " in parallel.stdout + parallel.stderr
    assert "shard 2/2 | " in parallel.stdout + parallel.stderr
    merged = report(jobs)
    assert outcomes(merged) == outcomes(report(whole))
    assert len(merged["tests"]) >= 8
    assert merged["merged_from"] == [str(jobs / "shard-1"), str(jobs / "shard-2")]
    shards = [report(jobs / f"shard-{k}") for k in (1, 2)]
    parts = [{n for n, _ in outcomes(s)} for s in shards]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert shards[0]["shard"]["selection"] == [n for n, _ in outcomes(report(whole))]
    for name in ("junit.xml", "results.ktap"):
        assert (jobs / name).stat().st_size > 0
    kcidb = json.loads((jobs / "results.kcidb.json").read_text())
    kcidb_io.schema.V5_3.validate_exactly(kcidb)
    assert len([t for t in kcidb["tests"] if t["status"] == "PASS"]) == len(merged["tests"])
    # The shards merged again by hand give the same report.
    again = tmp_path / "again"
    assert harness("merge", str(jobs / "shard-2"), str(jobs / "shard-1"), "--results",
                   str(again)).returncode == 0
    assert outcomes(report(again)) == outcomes(merged)
