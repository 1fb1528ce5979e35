"""A guest stuck before user space: the real kernel and initramfs, with PID 1 replaced by a
busybox sleep (`rdinit=/bin/busybox -- sleep 3600`: the kernel hands the words after `--` to
init). The harness must give up on it after its boot limit, not the run's."""

import time

import pytest

from harness import run, vm
from harness.commands import CommandRunner
from harness.errors import LostVMError
from harness.paths import default_cache_dir
from harness.progress import Progress

pytestmark = pytest.mark.vm

STALL_SECONDS = 20.0


def test_a_guest_stuck_before_user_space_is_killed_and_booted_once_more(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(vm, "BOOT_STALL_SECONDS", STALL_SECONDS)
    results = tmp_path / "results"
    options = run.RunOptions(results_dir=results, cache_dir=default_cache_dir(),
                             keyword="open_close",
                             extra_kernel_args=("rdinit=/bin/busybox", "--", "sleep", "3600"))
    started = time.monotonic()
    with pytest.raises(LostVMError, match="did not reach user space within 20 s") as raised:
        run.run(options, CommandRunner(), Progress())
    elapsed = time.monotonic() - started
    assert "before any test was collected" in str(raised.value)
    assert (results / "console-early-death-1.log").exists()
    assert (results / "console-2.log").exists()
    # Two boots of STALL_SECONDS each, and the build found in the cache: far below the
    # run's own limit (run_timeout, 5400 s), which is what a stuck boot used to cost.
    assert elapsed < options.run_timeout / 10
