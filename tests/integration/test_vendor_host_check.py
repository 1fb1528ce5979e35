"""host-check on a real 7.2 kernel with soft-reserved memory: a coherent QEMU guest plays the
vendor's machine (tests/guest/vendor/host_check_in_guest.py runs it there)."""

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
