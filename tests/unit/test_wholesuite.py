"""The whole-suite comparison's pure parts, fed with hmm-tests' real TAP from a TCG guest."""

import pytest

from harness import wholesuite


def test_the_c_guest_loads_test_hmm_with_the_runs_parameters_and_runs_both_fixtures():
    script = wholesuite.c_selftest_script(("spm_addr_dev0=0x100000000",
                                           "spm_addr_dev1=0x110000000"), "coherent")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "insmod /hmm/build/test_hmm.ko spm_addr_dev0=0x100000000 spm_addr_dev1=0x110000000" \
        in lines
    run = next(line for line in lines if line.startswith("/hmm/build/hmm-tests"))
    assert "-v hmm_device_coherent -v hmm2_device_coherent" in run
    assert "private" not in run and run.endswith(f"/hmm/results/{wholesuite.TAP_NAME} 2>&1")
    # The uptime is taken right before and right after hmm-tests, and the guest powers off.
    assert lines.index(run) - 1 == next(i for i, line in enumerate(lines)
                                        if wholesuite.TIMES_NAME in line)
    assert lines[-1] == "exec /bin/busybox poweroff -f"
    assert wholesuite.selftest_variants("all") == [
        "hmm_device_private", "hmm2_device_private", "hmm_device_coherent",
        "hmm2_device_coherent"]


def test_the_tap_of_a_whole_private_run_counts_its_passes_and_its_skip(data_dir):
    tap = (data_dir / "hmm-tests-7.2-private-whole.tap").read_text()
    assert wholesuite.tap_outcomes(tap) == {"passed": 37, "skipped": 1}
    assert wholesuite.tap_outcomes("not ok 3 hmm.hmm_device_private.anon_read\n") == {
        "failed": 1}


def test_the_uptimes_file_gives_the_span_of_hmm_tests_or_nothing_when_cut_short():
    assert wholesuite.uptimes("3.41\n52.07\n") == (3.41, 52.07)
    assert wholesuite.uptimes("3.41\n") is None


def test_the_summary_gives_medians_and_the_range_of_the_pairs_ratios():
    pairs = [wholesuite.Pair(66.4, 52.8, {"passed": 37}, {"passed": 37}, 57.0, 48.0),
             wholesuite.Pair(64.6, 52.6, {"passed": 37}, {"passed": 37}, 56.0, 48.5),
             wholesuite.Pair(60.0, 50.0, {"passed": 37}, {"passed": 36, "failed": 1}, 53.0, 47.0)]
    summary = wholesuite.summarize(pairs)
    assert summary["python_median"] == 64.6 and summary["c_median"] == 52.6
    assert summary["ratio_min"] == pytest.approx(1.20) and summary["ratio_max"] == pytest.approx(
        66.4 / 52.8)
    assert "C 1 failed, 36 passed" in summary["table"]
    assert "the tests alone 56.0 s against 48.0 s" in summary["table"]


def test_the_tests_span_runs_from_the_first_start_to_the_last_result():
    events = [{"event": "guest-started", "uptime": 4.0},
              {"event": "test-start", "uptime": 7.1}, {"event": "test-result", "uptime": 7.3},
              {"event": "test-start", "uptime": 7.4}, {"event": "test-result", "uptime": 60.2}]
    assert wholesuite.tests_span(events) == pytest.approx(53.1)
    assert wholesuite.tests_span([]) == 0.0


def test_a_pair_whose_runs_needed_a_second_boot_says_so():
    pair = wholesuite.Pair(70.0, 52.0, {"passed": 37}, {"passed": 37}, 51.0, 47.0,
                           python_boots=2)
    table = wholesuite.summarize([pair])["table"]
    assert "(2 boots for the harness's run)" in table and "C selftest)" not in table
    pair = wholesuite.Pair(60.0, 58.0, {"passed": 37}, {"passed": 37}, 51.0, 47.0, c_boots=2)
    assert "(2 boots for the C selftest)" in wholesuite.summarize([pair])["table"]
