"""Obtains a Debian kernel and the guest root that goes with it, cached by release."""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import archive, debian, guestroot, hostbuild, kconfig
from harness.commands import CommandRunner, require_tool
from harness.errors import KernelConfigError, KernelNotFoundError

# What of the kernel source the harness uses: test_hmm and the C selftest with its headers.
SOURCE_MEMBERS = [
    "Makefile", "lib/test_hmm.c", "lib/test_hmm_uapi.h", "mm/gup_test.h",
    "tools/testing/selftests/mm/*", "tools/testing/selftests/kselftest*",
    "tools/include/*",
    # The kernel's own KTAP parser, with which the project's tests read results.ktap back.
    "tools/testing/kunit/kunit_parser.py", "tools/testing/kunit/kunit_printer.py",
]
# A source unpacked before a member was added to SOURCE_MEMBERS lacks it: unpack again.
SOURCE_FILES_NEEDED = ("lib/test_hmm.c", "tools/testing/kunit/kunit_parser.py")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel and what it takes to build modules for it."""

    release: str
    image: Path
    config: Path
    modules_dir: Path
    source_dir: Path
    # Inside the guest root: where `make -C ... M=` builds out-of-tree modules.
    headers_in_root: str
    origin: str
    # Set for kernels built elsewhere than Debian: their modules are built on the host.
    host_build: hostbuild.HostBuild | None = None
    # Kernel arguments this kernel needs on top of the harness's own.
    boot_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Provisioned:
    kernel: Kernel
    root: Path


@contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """One harness at a time fills the cache; others wait instead of racing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _release_dir(cache_dir: Path, release: str) -> Path:
    return cache_dir / "debian" / release


def _root_dir(cache_dir: Path, release: str) -> Path:
    packages = guestroot.packages_for(release, guestroot.PACKAGES_FILE.read_text())
    return _release_dir(cache_dir, release) / guestroot.root_name(packages)


def _load_cached(cache_dir: Path, release: str) -> Provisioned | None:
    record = _release_dir(cache_dir, release) / "kernel.json"
    if not record.exists():
        return None
    data = json.loads(record.read_text())
    if data.get("format") != CACHE_FORMAT or Path(data["root"]) != _root_dir(cache_dir, release):
        return None
    saved = data["kernel"]
    if not all((Path(saved["source_dir"]) / f).exists() for f in SOURCE_FILES_NEEDED):
        return None
    kernel = Kernel(release=saved["release"], image=Path(saved["image"]),
                    config=Path(saved["config"]), modules_dir=Path(saved["modules_dir"]),
                    source_dir=Path(saved["source_dir"]), headers_in_root=saved["headers_in_root"],
                    origin=saved["origin"])
    return Provisioned(kernel=kernel, root=Path(data["root"]))


def _save(cache_dir: Path, provisioned: Provisioned) -> None:
    data = {"format": CACHE_FORMAT, "root": str(provisioned.root),
            "kernel": {k: str(v) for k, v in asdict(provisioned.kernel).items()}}
    record = _release_dir(cache_dir, provisioned.kernel.release) / "kernel.json"
    record.write_text(json.dumps(data, indent=2) + "\n")


def _kernel_in_root(root: Path, release: str, source_dir: Path, origin: str) -> Kernel:
    modules = root / "usr/lib/modules" / release
    return Kernel(release=release, image=modules / "vmlinuz", config=modules / "config",
                  modules_dir=modules, source_dir=source_dir,
                  headers_in_root=f"/usr/src/linux-headers-{release}", origin=origin)


def _choose(spec: debian.DebianKernelSpec, apt: archive.PrivateApt,
            runner: CommandRunner) -> tuple[str, str, str]:
    """(release, package version, why), checking DEVICE_PRIVATE before any big download."""
    available = debian.releases_from_pkgnames(apt.pkgnames("linux-binary-"))
    release, why = debian.choose_release(spec, available)
    candidates = [release] + ([] if spec.release == release else
                              [r for r in available if r != release])
    rejected: list[str] = []
    for candidate in candidates:
        packages = debian.KernelPackages(candidate)
        version = apt.version(packages.image)
        base = apt.download(packages.base, version, apt.state_dir.parent / "debs")
        options = kconfig.parse(archive.read_member(
            base, f"usr/lib/modules/{candidate}/config", runner).decode())
        try:
            kconfig.require(options, f"{candidate} from Debian {spec.suite}")
        except KernelConfigError as error:
            if spec.release == candidate:
                raise
            rejected.append(f"{candidate}: {error.problem}")
            continue
        if rejected:
            why += f"; skipped kernels without the needed options: {'; '.join(rejected)}"
        return candidate, version, why
    raise KernelNotFoundError(f"no kernel in Debian {spec.suite} has the options test_hmm needs",
                              "try --kernel experimental, or a kernel tree of your own")


def _remove_other_roots(home: Path, keep: Path) -> None:
    """Roots of earlier package lists, and their images: a gigabyte each, never used again."""
    for old in home.iterdir():
        if old.name.startswith("root") and not old.name.startswith(keep.name) \
                and old.name != "root.partial":
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def provision_debian(spec: debian.DebianKernelSpec, cache_dir: Path, mirror: str,
                     runner: CommandRunner) -> Provisioned:
    if spec.release and (cached := _load_cached(cache_dir, spec.release)):
        runner.announce(f"# using cached {cached.kernel.origin} from {cached.root}")
        return cached
    require_tool("mmdebstrap", "mmdebstrap")
    suites = debian.suites_for(spec.suite)
    apt = archive.PrivateApt(cache_dir / "apt" / "-".join(suites) / "state", mirror, suites,
                             runner)
    if runner.dry_run:
        release = spec.release or debian.PINNED_RELEASE
        version, why = "<version>", f"kernel {release} (dry run: not resolved)"
    else:
        release, version, why = _choose(spec, apt, runner)
    runner.announce(f"# {why}")
    if not runner.dry_run and (cached := _load_cached(cache_dir, release)):
        return cached
    packages = debian.KernelPackages(release)
    home = _release_dir(cache_dir, release)
    home.mkdir(parents=True, exist_ok=True)
    root = _root_dir(cache_dir, release)
    if not (root / "usr/bin/python3").exists():
        staging = home / "root.partial"
        shutil.rmtree(staging, ignore_errors=True)
        recipe = guestroot.PACKAGES_FILE.read_text()
        runner.run(guestroot.mmdebstrap_argv(suites, mirror,
                                             guestroot.packages_for(release, recipe), staging),
                   what="building the guest root with mmdebstrap")
        if not runner.dry_run:
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
            _remove_other_roots(home, keep=root)
    source_dir = home / "source"
    if not all((source_dir / member).exists() for member in SOURCE_FILES_NEEDED):
        source_deb = apt.download(packages.source, version, cache_dir / "debs") \
            if not runner.dry_run else Path(f"{packages.source}_{version}_all.deb")
        archive.extract_source_subset(source_deb, source_dir, SOURCE_MEMBERS, runner)
    origin = f"Debian {spec.suite} {packages.image} {version}"
    provisioned = Provisioned(kernel=_kernel_in_root(root, release, source_dir, origin),
                              root=root)
    if not runner.dry_run:
        _save(cache_dir, provisioned)
    return provisioned
