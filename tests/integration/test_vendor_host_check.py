"""Vendor mode on a real 7.2 kernel with soft-reserved memory: a coherent QEMU guest plays the
vendor's machine, and host-check and `run --target host` run inside it
(tests/guest/vendor/)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vm


def test_host_check_finds_the_guests_soft_reserved_memory_and_refuses_it_once_bound(
        harness_run) -> None:
    done = harness_run("--suite", "tests/guest/vendor/host_check_in_guest.py",
                       "--mode", "coherent")
    outcomes = done.outcomes()
    assert outcomes == {
        "tests/guest/vendor/host_check_in_guest.py::"
        "test_host_check_chooses_the_memory_the_guest_was_given[coherent]": "passed",
        "tests/guest/vendor/host_check_in_guest.py::"
        "test_host_check_refuses_memory_bound_to_device_dax[coherent]": "passed",
    }, done.output[-4000:]
    assert done.status == 0


def test_a_run_on_the_host_inside_a_guest_builds_loads_and_runs_the_suites(
        harness_run) -> None:
    done = harness_run("--suite", "tests/guest/vendor/run_on_host_in_guest.py",
                       "--mode", "coherent", "--test-timeout", "1300")
    assert done.outcomes() == {
        "tests/guest/vendor/run_on_host_in_guest.py::"
        "test_a_run_on_the_host_builds_loads_and_runs_the_suites[coherent]": "passed",
    }, done.output[-4000:]
    assert done.status == 0


def test_a_run_on_the_host_that_the_machine_dies_under_is_resumed(harness_run) -> None:
    done = harness_run("--suite", "tests/guest/vendor/resume_on_host_in_guest.py",
                       "--mode", "coherent", "--test-timeout", "1300")
    suite = "tests/guest/vendor/resume_on_host_in_guest.py::"
    assert done.outcomes() == {
        f"{suite}test_1_a_run_on_the_host_that_the_machine_dies_under[coherent]": "crashed",
        f"{suite}test_2_resume_finishes_the_run[coherent]": "passed",
    }, done.output[-4000:]


def test_a_run_on_the_host_stops_a_test_that_hangs_the_kernel(harness_run) -> None:
    done = harness_run("--suite", "tests/guest/vendor/hang_on_host_in_guest.py",
                       "--mode", "coherent", "--extra-kmod", "tests/kmod/hmm_faults",
                       "--test-timeout", "1300")
    assert done.outcomes() == {
        "tests/guest/vendor/hang_on_host_in_guest.py::"
        "test_a_test_that_hangs_the_kernel_is_stopped_and_the_run_reports_it[coherent]": "passed",
    }, done.output[-4000:]
    assert done.status == 0
