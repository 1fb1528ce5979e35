"""Acts: finds the debug information of the kernel and modules a run used, fetches Debian's
kernel debug package when asked, and runs addr2line over the frames of kernel reports.

- Modules: test_hmm.ko and the --extra-kmod modules are built here with DWARF, so their
  frames always decode (addr2line -j SECTION on the relocatable .ko, as the kernel's
  scripts/faddr2line does).
- vmlinux: Debian strips it and ships the DWARF in linux-image-RELEASE-dbg: a 1.2 GB download
  that takes minutes to unpack. Even System.map is only a placeholder in linux-base. So
  vmlinux frames decode only with --debug-symbols, which fetches the package once and keeps
  its vmlinux and System.map (about 440 MB) in the cache. A --kernel directory may hold its
  own vmlinux (and System.map) instead.
"""

from __future__ import annotations

import mmap
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness import archive, modinfo, symbolize
from harness.commands import CommandRunner, require_tool
from harness.errors import HarnessError, KernelNotFoundError
from harness.guest import protocol
from harness.paths import PROJECT_ROOT
from harness.provision import Kernel
from harness.results import TestOutcome

DEBUG_PACKAGE = "linux-image-{release}-dbg"
# Where the debug package keeps them, relative to its root.
DEBUG_MEMBERS = ("usr/lib/debug/lib/modules/{release}/vmlinux",
                 "usr/lib/debug/lib/modules/{release}/System.map")
FETCH_HINT = ("pass --debug-symbols to fetch Debian's {package} once into the cache "
              "(a 1.2 GB download, minutes to unpack, 440 MB kept)")


@dataclass
class DebugObject:
    """An ELF file with DWARF for one object of the trace (vmlinux or a module)."""

    elf: Path
    how: str
    system_map: Path | None = None
    _symbols: dict[str, list[symbolize.Symbol]] | None = None

    def symbols(self) -> dict[str, list[symbolize.Symbol]]:
        if self._symbols is None:
            if self.system_map is not None:
                self._symbols = symbolize.parse_system_map(self.system_map.read_text())
            else:
                with open(self.elf, "rb") as f, \
                        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    self._symbols = symbolize.parse_elf_functions(data)
        return self._symbols


@dataclass
class DebugInfo:
    objects: dict[str, DebugObject] = field(default_factory=dict)
    # Objects whose frames cannot be decoded, and why.
    missing: dict[str, str] = field(default_factory=dict)
    # DWARF directories and what they hold, for readable paths (see symbolize.source_path).
    prefixes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """For results.json: how the symbols of each object were found, or why not."""
        return {**{name: obj.how for name, obj in self.objects.items()}, **self.missing}


def _has_dwarf(elf: bytes) -> bool:
    return b".debug_line\0" in elf


def _module(path: Path, origin: str, info: DebugInfo) -> None:
    if not path.is_file():  # a dry run builds nothing
        return
    data = path.read_bytes()
    name = modinfo.module_info(data).get("name") or path.stem.replace("-", "_")
    if _has_dwarf(data):
        info.objects[name] = DebugObject(path, f"{path} ({origin}, with DWARF)")
    else:
        info.missing[name] = f"{path} ({origin}) has no DWARF: frames keep function+offset"


def installed_version(status_text: str, package: str) -> str | None:
    """The Version of `package` in a dpkg status file."""
    for stanza in status_text.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            version = re.search(r"^Version: (\S+)$", stanza, re.M)
            return version.group(1) if version else None
    return None


def root_suites(root: Path) -> list[str]:
    """The Debian suites the guest root was made from (mmdebstrap writes them there)."""
    sources = root / "etc/apt/sources.list"
    text = sources.read_text() if sources.exists() else ""
    return [line.split()[2] for line in text.splitlines()
            if line.startswith("deb ") and len(line.split()) >= 4]


def fetch_debian_vmlinux(kernel: Kernel, root: Path, cache_dir: Path, mirror: str,
                         runner: CommandRunner) -> Path:
    """The directory holding vmlinux and System.map of Debian's debug package for the
    kernel, fetched and unpacked on first use; the .deb is not kept."""
    directory = cache_dir / "debian" / kernel.release / "debug"
    if (directory / "vmlinux").exists() and (directory / "System.map").exists():
        return directory
    package = DEBUG_PACKAGE.format(release=kernel.release)
    status = root / "var/lib/dpkg/status"
    version = installed_version(status.read_text(errors="replace"),
                                f"linux-binary-{kernel.release}") if status.exists() else None
    if version is None and runner.dry_run:
        version = "<version>"
    elif version is None:
        raise KernelNotFoundError(f"cannot tell which version of {package} matches the kernel: "
                                  f"linux-binary-{kernel.release} is not installed in {root}",
                                  "drop --debug-symbols")
    suites = root_suites(root) or ["sid"]
    apt = archive.PrivateApt(cache_dir / "apt" / "-".join(suites) / "state", mirror, suites,
                             runner)
    if not runner.dry_run:
        available = apt.version(package)
        if available != version:
            raise KernelNotFoundError(
                f"Debian has {package} {available}, but the kernel is {version}: its debug "
                "symbols would not match", "drop --debug-symbols")
    deb = apt.download(package, version, cache_dir / "debs") if not runner.dry_run \
        else Path(f"{package}_{version}_amd64.deb")
    require_tool("tar", "tar")
    staging = directory.with_name("debug.partial")
    if not runner.dry_run:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    members = [f"./{m.format(release=kernel.release)}" for m in DEBUG_MEMBERS]
    runner.run(["sh", "-c", f"dpkg-deb --fsys-tarfile \"$0\" | tar -x -C \"$1\" "
                            f"--occurrence=1 {' '.join(members)}", deb, staging],
               what=f"unpacking vmlinux and System.map from {deb.name}")
    if runner.dry_run:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    for member in members:
        (staging / member).rename(directory / Path(member).name)
    shutil.rmtree(staging)
    deb.unlink()
    return directory


def locate(kernel: Kernel, root: Path, build_dir: Path, extra_kmods: tuple[Path, ...],
           cache_dir: Path, mirror: str, fetch_vmlinux: bool,
           runner: CommandRunner) -> DebugInfo:
    """What can decode the frames of this run's kernel and modules. Fetches Debian's debug
    package only with `fetch_vmlinux` (--debug-symbols)."""
    # test_hmm.c is built in /hmm/build from the kernel's lib/test_hmm.c.
    info = DebugInfo(prefixes={f"{protocol.GUEST_BUILD}/": "lib/"})
    _module(build_dir / "test_hmm.ko", "built from the kernel's lib/test_hmm.c", info)
    for extra in extra_kmods:
        shown = extra.relative_to(PROJECT_ROOT) if extra.is_relative_to(PROJECT_ROOT) else extra
        for ko in sorted((build_dir / "extra" / extra.name).glob("*.ko")):
            _module(ko, f"built from --extra-kmod {shown}", info)
        info.prefixes[f"{protocol.GUEST_BUILD}/extra/{extra.name}/"] = f"{shown}/"
    debian_kernel = kernel.modules_dir.is_relative_to(root)
    package = DEBUG_PACKAGE.format(release=kernel.release)
    own = [kernel.modules_dir / "vmlinux", kernel.modules_dir / "build" / "vmlinux"]
    if not debian_kernel and (vmlinux := next((p for p in own if p.is_file()), None)):
        system_map = vmlinux.with_name("System.map")
        info.objects[symbolize.VMLINUX] = DebugObject(
            vmlinux, f"{vmlinux} (found beside the --kernel directory's modules)",
            system_map if system_map.is_file() else None)
    elif debian_kernel and (fetch_vmlinux or (cache_dir / "debian" / kernel.release /
                                              "debug" / "vmlinux").exists()):
        directory = fetch_debian_vmlinux(kernel, root, cache_dir, mirror, runner)
        info.objects[symbolize.VMLINUX] = DebugObject(
            directory / "vmlinux", f"{directory}/vmlinux and System.map from Debian's {package}"
            " (cached)", directory / "System.map")
    elif debian_kernel:
        info.missing[symbolize.VMLINUX] = (
            "Debian's vmlinux is stripped and its System.map a placeholder; "
            + FETCH_HINT.format(package=package))
    else:
        info.missing[symbolize.VMLINUX] = (f"no vmlinux in {kernel.modules_dir} or its build/: "
                                           "vmlinux frames keep function+offset")
    return info


def decode(tests: list[TestOutcome], info: DebugInfo, runner: CommandRunner) -> None:
    """Sets each test's `decoded`: the distinct frames of its kernel log with file:line.
    Decoding only adds to the results: when it cannot be done, `info` says why."""
    wanted: dict[str, dict[symbolize.Frame, None]] = {}
    for test in tests:
        for frame in symbolize.frames_in(test.kernel_log):
            if frame.object_name in info.objects:
                wanted.setdefault(frame.object_name, {})[frame] = None
    if not wanted:
        return
    lines: dict[symbolize.Frame, list[tuple[str, str]]] = {}
    try:
        addr2line = require_tool("addr2line", "binutils")
        for name, frames in wanted.items():
            lines.update(_lookup(info.objects[name], list(frames), addr2line, runner))
    except (HarnessError, OSError, ValueError) as error:
        info.missing["addr2line"] = f"decoding failed: {error}"
    for test in tests:
        test.decoded = [symbolize.describe(frame, lines[frame], info.prefixes)
                        for frame in symbolize.frames_in(test.kernel_log) if frame in lines]


def _lookup(obj: DebugObject, frames: list[symbolize.Frame], addr2line: str,
            runner: CommandRunner) -> dict[symbolize.Frame, list[tuple[str, str]]]:
    """One addr2line call per section of `obj` (a .ko has one address space per section)."""
    by_section: dict[str | None, dict[symbolize.Frame, int]] = {}
    for frame in frames:
        symbol = symbolize.choose_symbol(obj.symbols().get(frame.symbol, []), frame.size)
        if symbol is not None:
            by_section.setdefault(symbol.section, {})[frame] = symbol.address + frame.lookup_offset
    lines: dict[symbolize.Frame, list[tuple[str, str]]] = {}
    for section, addresses in by_section.items():
        argv = [addr2line, "-a", "-f", "-i", "-p", "-e", str(obj.elf),
                *(["-j", section] if section else []),
                *sorted({f"{a:#x}" for a in addresses.values()})]
        found = symbolize.parse_addr2line(runner.run(argv, capture=True,
                                                     what=f"addr2line on {obj.elf}"))
        lines.update({frame: found.get(address, []) for frame, address in addresses.items()})
    return lines
