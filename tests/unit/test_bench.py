"""Benchmark figures, fed with the C selftest's real output from a TCG guest."""

import json

import pytest

from harness import bench, cli
from harness.results import TestOutcome


@pytest.fixture
def c_output(data_dir):
    return (data_dir / "hmm-tests-7.2-benchmark-private.txt").read_text()


def test_c_tables_are_parsed(c_output):
    figures = bench.parse_c_benchmark(c_output)
    # six sizes printed before the case timed out, two directions, THP and not
    assert len(figures) == 24
    first = figures[0]
    assert (first.label, first.size_bytes, first.thp, first.direction) == (
        "Small Buffer", 512 * 1024, True, "s2d")
    assert first.seconds == pytest.approx(0.010907)
    regular_d2s = [f for f in figures if f.label == "Eight THP Size" and f.direction == "d2s"
                   and not f.thp]
    assert regular_d2s[0].seconds == pytest.approx(0.325952)
    assert regular_d2s[0].gbps == pytest.approx(16 / 1024 / 0.325952)


def test_python_figures_pair_with_c(c_output):
    measurements = [
        {"kind": "thp_migration", "nodeid": "t.py::test_benchmark_thp_migration[private]",
         "label": "Single THP Size", "size_bytes": 2 << 20, "thp": True, "direction": "s2d",
         "seconds": 0.040},
        {"kind": "thp_migration", "nodeid": "t.py::test_benchmark_thp_migration[private]",
         "label": "One twenty eight THP Size", "size_bytes": 256 << 20, "thp": True,
         "direction": "s2d", "seconds": 5.0},
        {"kind": "thp_migration", "nodeid": "t.py::test_benchmark_thp_migration[coherent]",
         "label": "Single THP Size", "size_bytes": 2 << 20, "thp": True, "direction": "s2d",
         "seconds": 1.0},
    ]
    c_case = TestOutcome("c:hmm.hmm_device_private.benchmark_thp_migration", "failed",
                         message=c_output)
    text, data = bench.summarize(measurements, [c_case], ["private"])
    rows = data["migration"]["private"]
    assert len(rows) == 2
    assert rows[0]["ratio"] == pytest.approx(0.036480 / 0.040)
    assert rows[1]["c_gbps"] is None  # the C case timed out before 128 THPs
    assert "THP migration throughput [private]" in text


def test_read_latency_ratio():
    lines = bench.read_latency_lines([{"kind": "read_latency", "nodeid": "x[private]",
                                       "calls": 1000, "python_seconds": 0.05,
                                       "c_seconds": 0.02}])
    assert lines == ["1-page HMM_DMIRROR_READ [private]: Python 50.0 us/call, C 20.0 us/call, "
                     "ratio 2.50x (1000 calls each)"]


@pytest.mark.parametrize(("argv", "problem"), [
    (["--pairs", "3"], "--pairs needs --reference"),
    (["--reference", "--pairs", "0"], "--pairs 0: a comparison needs at least one pair"),
    (["--whole-suite", "--rounds", "0"], "--rounds 0 is not a positive count"),
    (["--whole-suite", "--reference"], "--whole-suite times the ported suites"),
    (["--whole-suite", "--startup"], "--whole-suite times the ported suites"),
])
def test_bad_bench_options_fail_before_any_build(capsys, tmp_path, monkeypatch, argv, problem):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))
    status = cli.main(["bench", "--results", str(tmp_path / "r"), *argv])
    assert status == cli.EXIT_HARNESS
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_bench_reference_runs_the_pairs_suite_instead_of_the_c_selftest_after_python():
    args = cli.build_parser().parse_args(["bench", "--reference", "--pairs", "7"])
    options = cli.options_from(args)
    assert options.bench_pairs == 7 and not options.reference
    assert options.suites == cli.BENCH_PAIRS_SUITES
    plain = cli.options_from(cli.build_parser().parse_args(["bench"]))
    assert plain.bench_pairs == 0 and plain.suites == cli.BENCH_SUITES


@pytest.fixture
def pair_measurements(data_dir):
    """`bench --reference --pairs 5` on 7.2.13 under TCG; pair 1's C table timed out (the host
    was busy), so only Python's half of it was recorded."""
    return json.loads((data_dir / "measurements-bench-pairs-private-7.2.json").read_text())


def test_pairs_count_only_pairs_both_sides_finished(pair_measurements):
    rows = bench.paired_ratios(pair_measurements, "private")
    assert len(rows) == 28  # 7 sizes, with and without THP, both directions
    assert {len(row.ratios) for row in rows} == {4}
    assert bench.paired_ratios(pair_measurements, "coherent") == []


def test_a_row_shows_the_median_ratio_its_spread_and_what_every_pair_agrees_on(
        pair_measurements):
    rows = {(r.size_bytes, r.thp, r.direction): r
            for r in bench.paired_ratios(pair_measurements, "private")}
    row = rows[4 * 2**20, False, "s2d"]
    # Each pair's ratio is C's time over Python's for that pair.
    assert row.ratios == pytest.approx([1.01, 1.19, 1.05, 1.04], abs=0.005)
    assert row.median == pytest.approx(1.045, abs=0.005)
    assert row.finding == "Python faster"
    assert rows[256 * 2**20, True, "d2s"].finding == "within the spread"
    small = rows[2**20, True, "d2s"]
    assert small.spread[1] < 1 and small.finding == "C faster"


def test_the_pairs_report_says_how_many_large_rows_reach_the_bar(pair_measurements):
    text, data = bench.summarize(pair_measurements, [], ["private"])
    assert "in 4 interleaved pairs" in text
    assert "2 MiB and more: median Py/C at least 0.95 in 17 of 20 rows" in text
    assert len(data["pairs"]["private"]) == 28 and data["migration"] == {}


def test_fewer_than_three_pairs_claim_nothing(pair_measurements):
    first_two = [m for m in pair_measurements if m["pair"] in (2, 3)]
    assert {r.finding for r in bench.paired_ratios(first_two, "private")} == {
        "too few pairs (fewer than 3)"}


def test_the_spread_is_the_middle_half_of_the_pairs_so_one_busy_pair_does_not_hide_a_gap(
        data_dir):
    """10 pairs on 7.2.13; pairs 8 and 9 ran while the host was busy (ratios down to 0.5)."""
    measurements = json.loads(
        (data_dir / "measurements-bench-pairs10-private-7.2.json").read_text())
    rows = {(r.size_bytes, r.thp, r.direction): r
            for r in bench.paired_ratios(measurements, "private")}
    row = rows[8 * 2**20, False, "s2d"]
    assert len(row.ratios) == 10
    assert row.extremes == pytest.approx((0.886, 1.107), abs=0.001)
    assert row.spread == pytest.approx((0.964, 0.992), abs=0.001)
    assert row.finding == "C faster"
    assert rows[256 * 2**20, False, "s2d"].finding == "within the spread"
    assert "the lowest 0.93 (quartiles 0.74-0.95, 2.0 MB, THP yes, d2s)" in bench.target_line(
        list(rows.values()))
