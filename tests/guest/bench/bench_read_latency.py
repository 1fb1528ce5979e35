"""Per-call overhead of a one-page HMM_DMIRROR_READ: the Python wrapper against the same
ioctl loop in C (read-latency, built beside test_hmm.ko), in the same guest.

Run by `python -m harness bench`; it records figures and asserts nothing about time.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

from harness.guest import protocol
from harness.guest.hmm import PAGE_SIZE, HmmBuffer, MirrorDevice
from harness.guest.protocol import Variant

CALLS = 20000
READ_LATENCY = f"{protocol.GUEST_BUILD}/read-latency"


def test_read_latency(variant: Variant, record_measurement: Callable[..., None]) -> None:
    device_path = variant.device_paths[0]
    with MirrorDevice(device_path) as device, HmmBuffer.anonymous(PAGE_SIZE) as buffer:
        buffer.fill(b"\x5a" * PAGE_SIZE)
        device.read(buffer.addr, 1, buffer.mirror_ptr)  # fault the page in first, as C does
        start = time.perf_counter()
        for _ in range(CALLS):
            device.read(buffer.addr, 1, buffer.mirror_ptr)
        python_seconds = time.perf_counter() - start
    c_run = subprocess.run([READ_LATENCY, device_path, str(CALLS)], capture_output=True,
                           text=True, check=True)
    c_seconds = json.loads(c_run.stdout)["seconds"]
    record_measurement(kind="read_latency", calls=CALLS, python_seconds=python_seconds,
                       c_seconds=c_seconds)
