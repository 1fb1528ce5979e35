"""Pure: a newc cpio archive of the initramfs that mounts the guest root, from a read-only
erofs image on virtio-blk where the kernel can, else over 9p, and the harness's shares over 9p."""

from __future__ import annotations

import gzip
import lzma
from dataclasses import dataclass
from pathlib import Path

from harness.paths import PROJECT_ROOT

INIT_SCRIPT = PROJECT_ROOT / "vm-images" / "initramfs-init.sh"
# 9p is a module in Debian's kernels; these are what mounting a 9p root needs, in load order.
NINEP_MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p")
# Mounting the guest root from its erofs image; used only where the kernel has both options
# and neither module needs another one (the initramfs loads a fixed list, not modules.dep).
BLOCK_ROOT_MODULES = {"virtio_blk": "CONFIG_VIRTIO_BLK", "erofs": "CONFIG_EROFS_FS"}
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


def module_dependencies(modules_dep: str) -> dict[str, list[str]]:
    """modules.dep as module name to the names it needs."""
    def name(path: str) -> str:
        return Path(path).name.split(".ko")[0]
    needs: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        module, _, deps = line.partition(":")
        if module:
            needs[name(module)] = [name(d) for d in deps.split()]
    return needs


def block_root_problem(kconfig: dict[str, str],
                       dependencies: dict[str, list[str]] | None) -> str | None:
    """Why this kernel cannot mount the guest root's erofs image from the initramfs, if it
    cannot; `dependencies` is its modules.dep, None where there is none."""
    for name, option in BLOCK_ROOT_MODULES.items():
        value = kconfig.get(option)
        if value not in ("y", "m"):
            return f"the kernel has no {option}"
        if value == "y":
            continue
        if dependencies is None or name not in dependencies:
            return f"{name} ({option}=m) is not among the kernel's modules"
        if dependencies[name]:
            return f"{name} needs other modules ({', '.join(dependencies[name])})"
    return None


def block_root_modules(kconfig: dict[str, str]) -> list[str]:
    return [name for name, option in BLOCK_ROOT_MODULES.items() if kconfig.get(option) == "m"]


def read_dependencies(modules_dir: Path) -> dict[str, list[str]] | None:
    path = modules_dir / "modules.dep"
    return module_dependencies(path.read_text()) if path.is_file() else None


def build(busybox: Path, modules_dir: Path, kconfig: dict[str, str]) -> bytes:
    """The gzip-compressed initramfs for a guest whose modules live in modules_dir; it can
    mount the root's erofs image when block_root_problem() finds none."""
    names = modules_to_load(kconfig)
    if block_root_problem(kconfig, read_dependencies(modules_dir)) is None:
        names += block_root_modules(kconfig)
    modules = {name: module_bytes(find_module(modules_dir, name)) for name in names}
    archive = newc_archive(entries(busybox.read_bytes(), modules, INIT_SCRIPT.read_bytes()))
    return gzip.compress(archive, compresslevel=1)
