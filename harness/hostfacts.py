"""Reads what harness/hostcheck.py judges off the machine the harness runs on.

Only reads: nothing here loads, binds or writes. `root` lets the host's tests read a tree
captured from a machine instead of this one.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

from harness import hostcheck, kconfig, spm
from harness.commands import CommandRunner
from harness.errors import CommandFailedError


def _read(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode()
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _hex(text: str) -> int:
    return int(text.strip(), 0)


def firmware_memmap(root: Path) -> tuple[tuple[int, int, str], ...]:
    directory = root / "sys/firmware/memmap"
    if not directory.is_dir():
        return ()
    entries = []
    for entry in sorted(directory.iterdir(), key=lambda p: int(p.name)):
        entries.append((_hex(_read(entry / "start")), _hex(_read(entry / "end")),
                        _read(entry / "type").strip()))
    return tuple(entries)


def dax_devices(root: Path) -> tuple[spm.DaxDevice, ...]:
    directory = root / "sys/bus/dax/devices"
    if not directory.is_dir():
        return ()
    devices = []
    for device in sorted(directory.iterdir()):
        resource, size = _read(device / "resource"), _read(device / "size")
        if not resource.strip() or not size.strip() or _hex(size) == 0:
            continue
        driver = device / "driver"
        devices.append(spm.DaxDevice(
            device.name, spm.AddressRange(_hex(resource), _hex(resource) + _hex(size) - 1),
            os.path.basename(os.readlink(driver)) if driver.is_symlink() else None,
            os.path.realpath(device)))
    return tuple(devices)


def cxl_regions(root: Path) -> tuple[tuple[str, spm.AddressRange], ...]:
    directory = root / "sys/bus/cxl/devices"
    if not directory.is_dir():
        return ()
    regions = []
    for region in sorted(directory.glob("region*")):
        resource, size = _read(region / "resource"), _read(region / "size")
        if resource.strip() and size.strip() and _hex(size) > 0:
            regions.append((region.name, spm.AddressRange(
                _hex(resource), _hex(resource) + _hex(size) - 1)))
    return tuple(regions)


def machine_memory(root: Path = Path("/")) -> spm.MachineMemory:
    return spm.MachineMemory(
        firmware_memmap=firmware_memmap(root), iomem=_read(root / "proc/iomem"),
        cmdline=_read(root / "proc/cmdline"), dax_devices=dax_devices(root),
        cxl_regions=cxl_regions(root))


def compiler_versions(names: list[str], runner: CommandRunner) -> dict[str, str]:
    versions = {}
    for name in names:
        if shutil.which(name) is None:
            continue
        try:
            output = runner.run([name, "--version"], capture=True, what=f"{name} --version")
        except CommandFailedError:
            continue
        versions[name] = output.splitlines()[0] if output else ""
    return versions


def gather(runner: CommandRunner, root: Path = Path("/")) -> hostcheck.HostFacts:
    release = os.uname().release
    sources = [s for s in hostcheck.config_sources(release) if (root / s.lstrip("/")).exists()]
    config_text = _read(root / sources[0].lstrip("/")) if sources else ""
    version_text = kconfig.parse(config_text).get("CONFIG_CC_VERSION_TEXT", "")
    loaded = tuple(line.split()[0] for line in _read(root / "proc/modules").splitlines()
                   if line.strip())
    return hostcheck.HostFacts(
        release=release, is_root=os.geteuid() == 0,
        build_dir_ready=(root / f"lib/modules/{release}/build/Makefile").exists(),
        config_sources=tuple(sources), config_text=config_text,
        compilers=compiler_versions(hostcheck.compiler_candidates(version_text), runner)
        if version_text else {},
        loaded_modules=loaded,
        missing_python_modules=tuple(m for m in hostcheck.PYTHON_MODULES
                                     if importlib.util.find_spec(m) is None),
        memory=machine_memory(root))
