"""Fixtures of the HMM suites: the kernel selftest's `hmm` and `hmm2` fixtures, in pytest.

`variant` (from harness.guest.plugin) says which two devices a memory model uses:
`dmirror` opens the first, as the selftest's `hmm` fixture does, and `dmirror2` opens both,
as `hmm2` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from harness.guest import hmm

if TYPE_CHECKING:
    from harness.guest.protocol import Variant


def open_mirror(variant: Variant, path: str, skip_if_missing: bool) -> hmm.MirrorDevice:
    try:
        return hmm.MirrorDevice(path)
    except OSError as error:
        if skip_if_missing and variant.is_coherent:
            pytest.skip(f"DEVICE_COHERENT not available: {path}: {error.strerror}")
        raise


@pytest.fixture
def dmirror(variant: Variant) -> Iterator[hmm.MirrorDevice]:
    with open_mirror(variant, variant.device_paths[0], skip_if_missing=True) as device:
        yield device


@pytest.fixture
def dmirror2(variant: Variant) -> Iterator[tuple[hmm.MirrorDevice, hmm.MirrorDevice]]:
    with open_mirror(variant, variant.device_paths[0], skip_if_missing=True) as device0, \
            open_mirror(variant, variant.device_paths[1], skip_if_missing=False) as device1:
        yield device0, device1


@pytest.fixture
def thp_size() -> int:
    size = hmm.pmd_size()
    if not size:
        pytest.skip("no transparent huge pages: "
                    "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size is missing")
    return size


@pytest.fixture(scope="session")
def hugetlb_page_size() -> Iterator[int]:
    """Size of a free default hugetlb page, reserving one for the session if none is free.

    As the kernel suite's HUGETLB_SETUP_DEFAULT_PAGES(1): grow the pool by what is missing,
    put its old size back afterwards.
    """
    size = hmm.default_huge_page_size()
    if not size:
        pytest.skip("no hugetlbfs: /proc/meminfo has no Hugepagesize")
    pool = f"{hmm.hugetlb_pool(size)}/nr_hugepages"
    with open(pool) as f:
        saved = int(f.read())
    missing = 1 - hmm.free_huge_pages(size)
    if missing > 0:
        try:
            with open(pool, "w") as f:
                f.write(str(saved + missing))
        except OSError as error:
            pytest.skip(f"no free hugetlb page and {pool} cannot grow: {error.strerror}")
    try:
        if hmm.free_huge_pages(size) < 1:
            pytest.skip(f"no free hugetlb page of {size // 1024} kB ({pool} would not grow)")
        yield size
    finally:
        if missing > 0:
            with open(pool, "w") as f:
                f.write(str(saved))

