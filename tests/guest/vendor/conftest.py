"""Suites that play a vendor's machine inside a coherent guest: each unloads test_hmm, does
what a run on the host does, and loads test_hmm again as the harness had it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from harness.guest import plugin

PARAMETERS = "/sys/module/test_hmm/parameters"


@pytest.fixture
def test_hmm_unloaded(variant: Any) -> Iterator[list[int]]:
    """The spm addresses test_hmm was loaded with; test_hmm unloaded meanwhile."""
    if not variant.is_coherent:
        pytest.skip("the private variant has no soft-reserved memory")
    addresses = []
    for device in (0, 1):
        with open(f"{PARAMETERS}/spm_addr_dev{device}") as parameter:
            addresses.append(int(parameter.read().strip(), 0))
    subprocess.run(["rmmod", "test_hmm"], check=True)
    try:
        yield addresses
    finally:
        # Whatever the test left loaded: its own test_hmm, device_dax over the memory.
        subprocess.run(["rmmod", "test_hmm"], capture_output=True)
        subprocess.run(["modprobe", "-r", "-a", "device_dax", "dax_hmem"], capture_output=True)
        plugin.load_module([f"spm_addr_dev{i}={a:#x}" for i, a in enumerate(addresses)],
                           "coherent")
