"""Pure: a newc cpio archive of the initramfs that mounts the guest root over 9p."""

from __future__ import annotations

import gzip
import lzma
from dataclasses import dataclass
from pathlib import Path

from harness.paths import PROJECT_ROOT

INIT_SCRIPT = PROJECT_ROOT / "vm-images" / "initramfs-init.sh"
# 9p is a module in Debian's kernels; these are what mounting a 9p root needs, in load order.
NINEP_MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p")
DIRECTORIES = ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")


@dataclass(frozen=True)
class Entry:
    path: str
    mode: int
    data: bytes = b""


def _header(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name), 0]
    header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields) + name
    return header + b"\0" * (-len(header) % 4)


def newc_archive(entries: list[Entry]) -> bytes:
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        out += _header(ino, entry) + entry.data
        out += b"\0" * (-len(entry.data) % 4)
    return bytes(out)


def find_module(modules_dir: Path, name: str) -> Path:
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        found = sorted(modules_dir.rglob(name + suffix))
        if found:
            return found[0]
    raise FileNotFoundError(f"no module {name} under {modules_dir}")


def module_bytes(path: Path) -> bytes:
    """busybox insmod takes plain ELF, so compressed modules are unpacked here."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        raise ValueError(f"{path}: zstd-compressed modules are not supported yet")
    return data


def entries(busybox: bytes, modules: dict[str, bytes], init_script: bytes) -> list[Entry]:
    items = [Entry(d, 0o40755) for d in DIRECTORIES]
    items.append(Entry("bin/busybox", 0o100755, busybox))
    items += [Entry(f"lib/modules/{name}.ko", 0o100644, data) for name, data in modules.items()]
    items.append(Entry("lib/modules/load-order", 0o100644, "".join(
        f"{name}\n" for name in modules).encode()))
    items.append(Entry("init", 0o100755, init_script))
    return items


def modules_to_load(kconfig: dict[str, str]) -> list[str]:
    """The 9p stack minus what the kernel has built in."""
    builtin = {"netfs": "CONFIG_NETFS_SUPPORT", "9pnet": "CONFIG_NET_9P",
               "9pnet_virtio": "CONFIG_NET_9P_VIRTIO", "9p": "CONFIG_9P_FS"}
    return [m for m in NINEP_MODULES if kconfig.get(builtin[m]) != "y"]


def build(busybox: Path, modules_dir: Path, kconfig: dict[str, str]) -> bytes:
    """The gzip-compressed initramfs for a guest whose modules live in modules_dir."""
    modules = {name: module_bytes(find_module(modules_dir, name))
               for name in modules_to_load(kconfig)}
    archive = newc_archive(entries(busybox.read_bytes(), modules, INIT_SCRIPT.read_bytes()))
    return gzip.compress(archive, compresslevel=1)
