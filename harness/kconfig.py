"""A pure model of a kernel .config and the options the suites need."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import KernelConfigError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Requirement:
    option: str
    # Values that satisfy it: built in, or also as a module.
    accepted: tuple[str, ...]
    reason: str


# test_hmm depends on these; none of them can be supplied by a module.
REQUIRED = (
    Requirement("CONFIG_ZONE_DEVICE", ("y",), "device memory (struct pages for device memory)"),
    Requirement("CONFIG_DEVICE_PRIVATE", ("y",), "unaddressable device-private memory"),
    Requirement("CONFIG_TRANSPARENT_HUGEPAGE", ("y",),
                "test_hmm depends on it; THP migration cases use it"),
    Requirement("CONFIG_HMM_MIRROR", ("y",), "hmm_range_fault(), the mirror side of test_hmm"),
    Requirement("CONFIG_MIGRATION", ("y",), "migrate_vma_*()"),
)
# What booting the guest needs, checked for kernels the harness did not configure itself
# (its own fragment, vm-images/kconfig/base.config, sets all of them). The initramfs loads
# only the 9p stack from a modules directory, so the rest must be built in.
GUEST_REQUIRED = (
    Requirement("CONFIG_MODULES", ("y",), "test_hmm is loaded as a module"),
    Requirement("CONFIG_BLK_DEV_INITRD", ("y",), "the harness boots through an initramfs"),
    Requirement("CONFIG_RD_GZIP", ("y",), "the initramfs is gzip-compressed"),
    Requirement("CONFIG_SERIAL_8250_CONSOLE", ("y",), "the console is ttyS0"),
    Requirement("CONFIG_VIRTIO_PCI", ("y",), "the 9p and virtio-serial devices are virtio-pci"),
    Requirement("CONFIG_VIRTIO_CONSOLE", ("y",), "test events come out on a virtio-serial port"),
    Requirement("CONFIG_NET_9P_VIRTIO", ("y", "m"), "the guest root is shared over 9p"),
    Requirement("CONFIG_9P_FS", ("y", "m"), "the guest root is shared over 9p"),
    Requirement("CONFIG_DEVTMPFS", ("y",), "/dev in the guest"),
    Requirement("CONFIG_TMPFS", ("y",), "/tmp in the guest (the root is read-only)"),
    Requirement("CONFIG_UNIX", ("y",), "python3 uses unix sockets"),
    Requirement("CONFIG_ACPI", ("y",), "the guest powers QEMU off through ACPI"),
)
# Checked and reported; a kernel without them still runs, with the cases that need them skipped.
REPORTED = (
    "CONFIG_DEVICE_MIGRATION", "CONFIG_TEST_HMM", "CONFIG_GUP_TEST", "CONFIG_HUGETLBFS",
    "CONFIG_MODULE_SIG_FORCE", "CONFIG_PANIC_ON_OOPS", "CONFIG_KASAN", "CONFIG_DEBUG_VM",
    "CONFIG_MAGIC_SYSRQ", "CONFIG_VIRTIO_CONSOLE", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS",
)


def parse(text: str) -> dict[str, str]:
    """Option -> value; options reported as `is not set` map to 'n'."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _SET.match(line):
            options[match.group(1)] = match.group(2).strip('"')
        elif match := _UNSET.match(line):
            options[match.group(1)] = "n"
    return options


def missing(options: dict[str, str],
            requirements: tuple[Requirement, ...] = REQUIRED) -> list[Requirement]:
    return [r for r in requirements if options.get(r.option, "n") not in r.accepted]


def checked_values(options: dict[str, str]) -> dict[str, str]:
    """The options the harness looked at, for results.json."""
    names = [r.option for r in REQUIRED] + list(REPORTED)
    return {name: options.get(name, "n") for name in names}


def require(options: dict[str, str], where: str,
            requirements: tuple[Requirement, ...] = REQUIRED) -> None:
    """Raise KernelConfigError naming every missing option."""
    absent = missing(options, requirements)
    if not absent:
        return
    lines = [f"  {r.option}={options.get(r.option, 'n')} (needs {'/'.join(r.accepted)}: "
             f"{r.reason})" for r in absent]
    raise KernelConfigError(
        f"the kernel {where} lacks options test_hmm needs:\n" + "\n".join(lines),
        "use a kernel built with them: the default Debian sid kernel has them, or build a tree "
        "with " + ", ".join(f"{r.option}=y" for r in absent))


def compiler(options: dict[str, str]) -> str:
    """The C compiler the kernel was built with, as CONFIG_CC_VERSION_TEXT names it."""
    text = options.get("CONFIG_CC_VERSION_TEXT", "")
    return text.split()[0] if text.strip() else "gcc"
