"""`python -m harness host-check` inside a coherent guest, playing a vendor's machine.

The guest's soft-reserved memory comes from memmap= on its command line, and the harness gave
test_hmm the start of each 256 MiB half. Unloaded, that memory must be what host-check
chooses; bound to device_dax, it must be refused with the command that frees it. Not a
default suite: it unbinds test_hmm's memory (it loads test_hmm again at the end).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from harness.guest import protocol

DAX_DEVICES = "/sys/bus/dax/devices"


def host_check(tmp_path: Any, *options: str) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / "host-check.json"
    done = subprocess.run(["python3", "-m", "harness", "host-check", "--mode", "coherent",
                           "--json", str(report), *options],
                          cwd=protocol.GUEST_PROJECT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return done.returncode, json.loads(report.read_text()), done.stderr


def problems(report: dict[str, Any]) -> str:
    return "\n".join(p["problem"] + " / " + p["fix"] for p in report["problems"])


def test_host_check_chooses_the_memory_the_guest_was_given(
        test_hmm_unloaded: list[int], tmp_path: Any) -> None:
    status, report, stderr = host_check(tmp_path)
    # The guest root has the kernel's headers and compiler (it builds test_hmm's cffi
    # binding): a machine ready for a run on its own kernel.
    assert status == 0 and report["ready"], stderr
    assert report["compiler"] == "x86_64-linux-gnu-gcc-16"
    assert report["spm"]["addresses"] == [f"{a:#x}" for a in test_hmm_unloaded]
    [found] = report["spm_found"]
    assert found["sources"] == ["memmap= on the kernel command line"] and not found["owners"]
    assert not any("soft-reserved" in p["problem"] for p in report["problems"])
    given = ["--spm-addr", f"{test_hmm_unloaded[1]:#x}", "--spm-addr",
             f"{test_hmm_unloaded[0]:#x}"]
    _, swapped, _ = host_check(tmp_path, *given)
    assert swapped["spm"]["addresses"] == [f"{a:#x}" for a in reversed(test_hmm_unloaded)]


def test_host_check_refuses_memory_bound_to_device_dax(
        test_hmm_unloaded: list[int], tmp_path: Any) -> None:
    bound = subprocess.run(["modprobe", "-a", "dax_hmem", "device_dax"], capture_output=True,
                           text=True)
    if bound.returncode != 0:
        pytest.skip(f"no dax_hmem/device_dax (CONFIG_DEV_DAX_HMEM): {bound.stderr.strip()}")
    [device] = os.listdir(DAX_DEVICES)
    driver = f"{DAX_DEVICES}/{device}/driver"
    if not os.path.islink(driver):
        # A soft-reserved region prefers kmem; naming the device to device_dax binds it there,
        # as `daxctl reconfigure-device --mode=devdax` does.
        with open("/sys/bus/dax/drivers/device_dax/new_id", "w") as new_id:
            new_id.write(device)
    deadline = time.monotonic() + 10
    while not os.path.islink(driver) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.path.basename(os.readlink(driver)) == "device_dax"
    status, report, stderr = host_check(tmp_path)
    assert status == 125, stderr
    assert report["spm"] is None
    refusal = problems(report)
    assert f"{device} (driver device_dax)" in refusal
    assert f"daxctl disable-device {device}" in refusal
    status, report, _ = host_check(tmp_path, "--spm-addr", f"{test_hmm_unloaded[0]:#x}",
                                   "--spm-addr", f"{test_hmm_unloaded[1]:#x}")
    assert f"used by {device} (driver device_dax)" in problems(report)
