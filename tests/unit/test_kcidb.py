"""results.kcidb.json from real captured runs, validated with kcidb-io's own v5.3 schema."""

import json

import kcidb_io
import pytest

from harness import kcidb, results
from harness.errors import UsageError

SCHEMA = kcidb_io.schema.V5_3


def captured(data_dir, name):
    report = results.from_json(json.loads((data_dir / name).read_text()))
    report.started_at = "2026-12-02T12:54:21+00:00"
    return report


@pytest.mark.parametrize("name", ["results-private-7.2.json", "results-coherent-7.2.json",
                                  "results-private-7.2-thp-free-crash.json"])
def test_the_document_is_valid_kcidb_5_3(data_dir, name):
    document = kcidb.to_kcidb(captured(data_dir, name))
    SCHEMA.validate_exactly(document)
    assert document["version"] == {"major": 5, "minor": 3}
    ids = [t["id"] for t in document["tests"]]
    assert len(ids) == len(set(ids))


def test_every_outcome_has_a_status_and_no_failure_passes(data_dir):
    report = captured(data_dir, "results-private-7.2.json")
    template = report.tests[0]
    report.tests = [results.TestOutcome(f"{template.nodeid[:-1]}-{o}]", o)
                    for o in results.OUTCOMES]
    statuses = {t["misc"]["outcome"]: t["status"] for t in kcidb.to_kcidb(report)["tests"]
                if "outcome" in t["misc"]}
    assert set(statuses) == set(results.OUTCOMES)
    assert [o for o, s in statuses.items() if s == "PASS"] == ["passed"]
    assert statuses["known-failure"] == statuses["kernel-error"] == "FAIL"
    SCHEMA.validate_exactly(kcidb.to_kcidb(report))


def test_a_known_failure_is_an_incident_of_its_issue(data_dir):
    from harness import knownissues
    report = captured(data_dir, "results-private-7.2-thp-free-crash.json")
    knownissues.apply(report.tests, knownissues.load((knownissues.PROJECT_FILE,)),
                      knownissues.KernelFacts(report.kernel["release"],
                                              report.kernel["origin"], {}))
    document = kcidb.to_kcidb(report)
    SCHEMA.validate_exactly(document)
    issues = {i["id"] for i in document["issues"]}
    assert issues == {"hmm_harness:thp-free-race-soft-lockup",
                      "hmm_harness:thp-free-race-freed-device-thp-copied"}
    crashed = next(t for t in document["tests"]
                   if t["path"] == "hmm.private.test_migrate_back_while_huge_pages_are_freed_whole")
    assert crashed["status"] == "FAIL" and crashed["misc"]["actual_outcome"] == "crashed"
    assert {i["test_id"] for i in document["incidents"]} >= {crashed["id"]}


def test_the_log_excerpt_keeps_within_16_kib_of_utf8(data_dir):
    report = captured(data_dir, "results-private-7.2.json")
    report.tests[0].kernel_log = ["BUG: \u00e9\u00e9 spl\u00e4t " * 40] * 400
    excerpt = kcidb.to_kcidb(report)["tests"][0]["log_excerpt"]
    assert len(excerpt.encode()) <= kcidb.LOG_EXCERPT_BYTES
    assert len(excerpt.encode()) > kcidb.LOG_EXCERPT_BYTES - 4
    SCHEMA.validate_exactly(kcidb.to_kcidb(report))


def test_the_benchmark_numbers_are_done_records(data_dir):
    report = captured(data_dir, "results-private-7.2-thp-free-crash.json")
    done = [t for t in kcidb.to_kcidb(report)["tests"] if t["status"] == "DONE"]
    measured = [m for m in report.measurements if m["kind"] == "thp_migration"]
    assert len(done) == len(measured) > 0
    assert done[0]["path"].startswith("hmm.private.benchmark.")
    assert done[0]["number"]["unit"] == "B/s"
    assert done[0]["number"]["value"] == pytest.approx(
        measured[0]["size_bytes"] / measured[0]["seconds"])


def test_ids_are_stable_for_a_run_and_differ_between_kernels(data_dir):
    report = captured(data_dir, "results-private-7.2.json")
    assert kcidb.to_kcidb(report) == kcidb.to_kcidb(report)
    other = captured(data_dir, "results-private-7.2.json")
    other.kernel = {**other.kernel, "release": "7.3.0-rc7"}
    assert kcidb.to_kcidb(other)["builds"][0]["id"] != kcidb.to_kcidb(report)["builds"][0]["id"]


@pytest.mark.parametrize("origin", ["My-CI", "ci:x", ""])
def test_a_bad_origin_is_refused(origin):
    with pytest.raises(UsageError, match="is not a KCIDB origin"):
        kcidb.check_origin(origin)
