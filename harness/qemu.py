"""Pure: the QEMU command line for one guest boot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.guest import protocol

EVENTS_PORT = protocol.EVENTS_PORT_NAME

# Guest-physical layout for device-coherent memory. QEMU's pc machine puts RAM above 3.5 GiB
# at 4 GiB, so with enough memory [4 GiB, 4.5 GiB) is ordinary RAM that `memmap=...%...+...`
# turns into soft-reserved (E820 type 0xefffffff). test_hmm maps one 256 MiB chunk
# (DEVMEM_CHUNK_SIZE) at each spm_addr_devN.
COHERENT_BASE = 0x1_0000_0000
COHERENT_CHUNK = 256 << 20
COHERENT_DEVICES = 2
SOFT_RESERVED_TYPE = 0xEFFFFFFF


@dataclass(frozen=True)
class Share:
    """A host directory the guest mounts over virtio-9p."""

    tag: str
    host_path: Path
    read_only: bool = True


@dataclass(frozen=True)
class GuestLayout:
    """What memory and module parameters a memory mode needs."""

    memory_mib: int
    kernel_args: tuple[str, ...]
    module_params: tuple[str, ...]


DEFAULT_MEMORY_MIB = {False: 2048, True: 6144}
# QEMU's pc machine keeps at most 3 GiB of RAM below 4 GiB and maps the rest from 4 GiB up.
LOW_RAM_LIMIT_MIB = 3072


def coherent_memory_problem(memory_mib: int) -> str | None:
    """Why a guest of this size cannot hold the soft-reserved device memory, if it cannot."""
    high_ram_end = (4 << 30) + max(0, memory_mib - LOW_RAM_LIMIT_MIB) * (1 << 20)
    needed_end = COHERENT_BASE + COHERENT_CHUNK * COHERENT_DEVICES
    if memory_mib > LOW_RAM_LIMIT_MIB and high_ram_end >= needed_end + (1 << 30):
        return None
    return (f"device-coherent memory needs guest RAM at {COHERENT_BASE:#x}-{needed_end:#x} "
            f"to soft-reserve, plus 1 GiB above it; {memory_mib} MiB of guest memory ends at "
            f"{high_ram_end:#x}")


def guest_layout(coherent: bool, memory_mib: int | None = None) -> GuestLayout:
    memory = memory_mib or DEFAULT_MEMORY_MIB[coherent]
    if not coherent:
        return GuestLayout(memory_mib=memory, kernel_args=(), module_params=())
    size = COHERENT_CHUNK * COHERENT_DEVICES
    memmap = f"memmap={size >> 20}M%{COHERENT_BASE:#x}-1+{SOFT_RESERVED_TYPE:#x}"
    params = tuple(f"spm_addr_dev{i}={COHERENT_BASE + i * COHERENT_CHUNK:#x}"
                   for i in range(COHERENT_DEVICES))
    return GuestLayout(memory_mib=memory, kernel_args=(memmap,), module_params=params)


@dataclass(frozen=True)
class VmSpec:
    qemu: str
    accel: str  # "kvm" or "tcg"
    cpus: int
    memory_mib: int
    kernel_image: Path
    initramfs: Path
    kernel_args: tuple[str, ...]
    shares: tuple[Share, ...]
    console_log: Path
    events_log: Path
    monitor_socket: Path
    # The guest root as a read-only erofs image on virtio-blk; None: the "sysroot" share.
    root_image: Path | None = None
    firmware: Path | None = None  # -bios; None: QEMU's default (SeaBIOS)


BASE_KERNEL_ARGS = (
    "console=ttyS0",
    "quiet",  # the guest init raises the console log level once booted: boot is faster quiet
    "panic=-1",  # reboot at once on panic; with -no-reboot QEMU then exits
    # After an Oops the kernel holds whatever locks the killed task held: later tests in the
    # same boot would fail or hang for reasons not their own. Panic, and let the host boot
    # a fresh guest for the next test.
    "oops=panic",
    "printk.devkmsg=on",  # test markers written to /dev/kmsg must never be rate-limited
    "no_hash_pointers",
)


# qboot, QEMU's minimal firmware for booting a Linux kernel directly: 0.2 s faster than SeaBIOS
# under TCG (bench --startup's bare boot, paired). Debian ships it in qemu-system-data.
QBOOT = Path("/usr/share/qemu/qboot.rom")


def direct_boot_firmware(qboot: Path = QBOOT) -> Path | None:
    return qboot if qboot.is_file() else None


def build_argv(spec: VmSpec) -> list[str]:
    cpu = "host" if spec.accel == "kvm" else "max"
    machine = [
        spec.qemu,
        "-accel", spec.accel, "-cpu", cpu,
        "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
        "-no-reboot",  # a reboot request (panic=-1 included) ends QEMU
        "-nodefaults", "-display", "none", "-vga", "none",
        "-nic", "none",  # the guest has no network
    ]
    firmware = ["-bios", str(spec.firmware)] if spec.firmware else []
    boot = [
        *firmware,
        "-kernel", str(spec.kernel_image),
        "-initrd", str(spec.initramfs),
        "-append", " ".join(spec.kernel_args),
    ]
    channels = [
        # The console goes to a file so it survives a guest that panics or hangs.
        "-chardev", f"file,id=console,path={spec.console_log}",
        "-serial", "chardev:console",
        # Test events and the final status get their own channel, never scraped from the console.
        "-device", "virtio-serial-pci",
        "-chardev", f"file,id=events,path={spec.events_log}",
        "-device", f"virtserialport,chardev=events,name={EVENTS_PORT}",
        # The monitor lets the host ask a hung guest for sysrq task dumps.
        "-monitor", f"unix:{spec.monitor_socket},server=on,wait=off",
    ]
    disks: list[str] = []
    if spec.root_image is not None:
        disks = ["-drive", f"file={spec.root_image},format=raw,if=none,id=root,readonly=on",
                 "-device", "virtio-blk-pci,drive=root"]
    shares: list[str] = []
    for share in spec.shares:
        ro = ",readonly=on" if share.read_only else ""
        shares += ["-virtfs", f"local,path={share.host_path},mount_tag={share.tag},"
                              f"security_model=none{ro}"]
    return machine + boot + channels + disks + shares
