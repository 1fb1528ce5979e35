"""Kernel settings the suites run under: the guest's init applies them all, a run on a host
only the memory ones, for the run's length (harness.hostrun)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

REPORTING_SETTINGS = {
    # Boot ran with `quiet`; from here on every message, markers included, reaches the console.
    "/proc/sys/kernel/printk": "8 4 1 7",
    # The host asks for task dumps with sysrq when a test hangs.
    "/proc/sys/kernel/sysrq": "1",
    # A task stuck in D state is reported well before the host's watchdog gives up.
    "/proc/sys/kernel/hung_task_timeout_secs": "30",
}

# migrate_vma_setup() is best effort: it skips a page that someone else holds isolated or
# locked at that moment, and test_hmm reports the partial migration as ENOENT. These turn off
# background mm work that does so and that the suites do not test (docs/known-issues.md,
# "Flakes that were not kernel bugs").
BACKGROUND_MM_SETTINGS = {
    # Proactive compaction, and khugepaged's while it allocates THPs, isolate small pages.
    "/proc/sys/vm/compaction_proactiveness": "0",
    "/sys/kernel/mm/transparent_hugepage/khugepaged/defrag": "0",
    # DAMON_STAT (on by default where CONFIG_DAMON_STAT_ENABLED_DEFAULT=y, as in Debian's
    # 7.2) samples random physical pages and holds each one's folio lock while it walks its
    # rmap (damon_folio_mkold, damon_folio_young).
    "/sys/module/damon_stat/parameters/enabled": "N",
}

GUEST_SETTINGS = {**REPORTING_SETTINGS, **BACKGROUND_MM_SETTINGS}


def read(path: str) -> str:
    with open(path) as setting:
        return setting.read().strip()


def write(path: str, value: str) -> None:
    with open(path, "w") as setting:
        setting.write(value)


def apply(settings: Mapping[str, str]) -> dict[str, str]:
    """Write the settings this kernel has; returns what each one was before."""
    before = {}
    for path, value in settings.items():
        if os.path.exists(path):
            before[path] = read(path)
            write(path, value)
    return before


class Applied:
    """The settings for the length of a `with` block, then the values from before again.
    (A class, not contextlib: the guest's PID 1 imports this module.)"""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.settings = settings
        self.before: dict[str, str] = {}

    def __enter__(self) -> dict[str, str]:
        self.before = apply(self.settings)
        return self.before

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        apply(self.before)
