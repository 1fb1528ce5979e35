"""THP migration throughput of the Python suites against the C selftest's, in pairs.

Each test is one pair: the whole benchmark table from Python and from hmm-tests'
benchmark_thp_migration, one after the other in the same boot, on the same device. Odd pairs
run Python first and even pairs C first, so that a drift during the boot (memory
fragmenting, the page cache growing) weighs on both sides alike. The host reads one Python/C
ratio per pair and prints their median and spread (harness/bench.py).

Run by `python -m harness bench --reference [--pairs N]`; it asserts nothing about time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.guest import hmm, migrationbench
from harness.guest.protocol import Variant


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pair" in metafunc.fixturenames:
        pairs = int(metafunc.config.getoption("hmm_bench_pairs"))
        metafunc.parametrize("pair", range(1, pairs + 1), ids=lambda n: f"pair{n}")


# One table takes about 95 s under TCG on the default suite's 2 GiB guest.
@pytest.mark.timeout(900)
def test_migration_pair(variant: Variant, dmirror: hmm.MirrorDevice, thp_size: int, pair: int,
                        record_measurement: Callable[..., None]) -> None:
    sides = ("python", "c") if pair % 2 else ("c", "python")
    for side in sides:
        figures = (migrationbench.python_table(dmirror, thp_size) if side == "python"
                   else migrationbench.c_table(variant.name, timeout=600))
        for figure in figures:
            record_measurement(kind="thp_migration_pair", variant=variant.name, pair=pair,
                               side=side, **migrationbench.as_measurement(figure))
