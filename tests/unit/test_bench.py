"""Benchmark figures, fed with the C selftest's real output from a TCG guest."""

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
