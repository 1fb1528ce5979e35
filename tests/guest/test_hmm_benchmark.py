"""The kernel selftest's benchmark_thp_migration, alone so that it runs last.

In coherent mode it has crashed the 7.2 kernel (NULL pointer dereference in
dmirror_migrate_to_device); every other case has reported by then.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.guest import hmm, migrationbench


# About 95 s under TCG; the kernel selftest gives it 120 s on real hardware.
@pytest.mark.timeout(900)
def test_benchmark_thp_migration(
        dmirror: hmm.MirrorDevice, thp_size: int,
        record_testsuite_property: Callable[[str, object], None],
        record_measurement: Callable[..., None]) -> None:
    figures = migrationbench.python_table(dmirror, thp_size)
    gbps = {(f.label, f.direction, f.thp): f.gbps for f in figures}
    for figure in figures:
        record_measurement(kind="thp_migration", **migrationbench.as_measurement(figure))
        if figure.thp:
            record_testsuite_property(
                f"{figure.label} {figure.direction} GB/s thp/regular",
                f"{figure.gbps:.3f}/{gbps[figure.label, figure.direction, False]:.3f}")
