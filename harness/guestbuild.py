"""Builds what the guest needs for one kernel: test_hmm.ko, the cffi extension, the initramfs."""

from __future__ import annotations

import hashlib
import lzma
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import guestroot, hostbuild, initramfs, kconfig, kmodext, modinfo
from harness.commands import CommandRunner
from harness.errors import ModuleMismatchError
from harness.guest import protocol
from harness.kernelspec import TestHmmSource
from harness.paths import PROJECT_ROOT
from harness.provision import Kernel

KMOD_MAKEFILE = PROJECT_ROOT / "kmod" / "Makefile"
CFFI_BUILD_SCRIPT = PROJECT_ROOT / "harness" / "guest" / "uapi_build.py"


@dataclass(frozen=True)
class GuestBuild:
    directory: Path  # shared read-only with the guest at /hmm/build
    module: Path
    uapi_header: Path
    initramfs: Path


def module_sources(kernel: Kernel, test_hmm_source: TestHmmSource | None = None
                   ) -> dict[str, Path]:
    """test_hmm.c and its uapi header come from the kernel's source, or --test-hmm-source."""
    own = test_hmm_source
    return {"test_hmm.c": own.test_hmm_c if own else kernel.source_dir / "lib/test_hmm.c",
            "test_hmm_uapi.h": own.uapi_h if own and own.uapi_h
            else kernel.source_dir / "lib/test_hmm_uapi.h",
            "Makefile": KMOD_MAKEFILE,
            # #included by test_hmm.c when kmodext hooks it in
            "test_hmm_evict.c": kmodext.EXTENSION}


def _inputs_key(kernel: Kernel, sources: dict[str, Path], extra: tuple[Path, ...]) -> str:
    digest = hashlib.sha256(kernel.release.encode())
    if kernel.host_build is not None:
        digest.update(kernel.host_build.identity.encode())
    extra_files = [f for d in extra for f in sorted(d.iterdir()) if f.is_file()]
    selftest = [kernel.source_dir / s for s in SELFTEST_SOURCES]
    for path in [*sources.values(), CFFI_BUILD_SCRIPT, READ_LATENCY_SOURCE, initramfs.INIT_SCRIPT,
                 Path(initramfs.__file__), Path(kmodext.__file__), *selftest, *extra_files]:
        digest.update(str(path.name).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def kernel_vermagic(kernel: Kernel) -> str | None:
    """vermagic of a module the kernel's own build produced: what the kernel accepts. None
    when the kernel brought no module of its own (9p built in, no modules directory)."""
    shipped = hostbuild.reference_module(kernel.modules_dir)
    if shipped is None:
        return None
    data = shipped.read_bytes()
    if shipped.suffix == ".xz":
        data = lzma.decompress(data)
    return modinfo.module_info(data)["vermagic"]


def verify_module(module: Path, kernel: Kernel) -> None:
    info = modinfo.module_info(module.read_bytes())
    expected = kernel_vermagic(kernel)
    if expected is None:  # no module to compare with: at least the release must match
        expected = kernel.release + " " + " ".join(info.get("vermagic", "").split()[1:])
    modinfo.check_vermagic(info.get("vermagic", "(none)"), expected, module.name)
    image_release = modinfo.bzimage_release(kernel.image.read_bytes())
    if image_release != kernel.release:
        raise ModuleMismatchError(f"{kernel.image} reports release {image_release}, "
                                  f"not {kernel.release}")


def _make_module_argv(kernel: Kernel, root: Path, directory: Path,
                      subdir: str = "") -> list[str]:
    if kernel.host_build is not None:
        return hostbuild.module_make_argv(kernel.host_build, directory / subdir)
    module_dir = f"{protocol.GUEST_BUILD}/{subdir}".rstrip("/")
    return guestroot.in_root_argv(
        root, ["make", "-C", kernel.headers_in_root, f"M={module_dir}", "modules"],
        {protocol.GUEST_BUILD: directory})


def kernel_compiler(kernel: Kernel) -> str:
    """The guest root has only the kernel's compiler, not the `gcc` build tools assume; a kernel
    built elsewhere than Debian leaves the root's own compiler."""
    if kernel.host_build is not None:
        return hostbuild.guest_root_compiler()
    return kconfig.compiler(kconfig.parse(kernel.config.read_text())) \
        if kernel.config.exists() else "gcc"


SELFTEST_SOURCES = ("tools/testing/selftests/mm/hmm-tests.c",
                    "tools/testing/selftests/mm/vm_util.c",
                    "tools/testing/selftests/mm/hugepage_settings.c")


def _selftest_argv(kernel: Kernel, root: Path, directory: Path) -> list[str]:
    """The kernel's own hmm-tests, built as its selftest Makefile would, for the guest."""
    cc = kernel_compiler(kernel)
    return guestroot.in_root_argv(
        root, [cc, "-O2", "-I.", "-Itools/testing/selftests", "-Itools/testing/selftests/mm",
               *SELFTEST_SOURCES, "-lpthread", "-o", protocol.HMM_TESTS],
        {protocol.GUEST_BUILD: directory, "/hmm/src": kernel.source_dir}, cwd="/hmm/src")


READ_LATENCY_SOURCE = PROJECT_ROOT / "harness" / "guest" / "read_latency.c"


def _read_latency_argv(kernel: Kernel, root: Path, directory: Path) -> list[str]:
    cc = kernel_compiler(kernel)
    build, project = protocol.GUEST_BUILD, protocol.GUEST_PROJECT
    return guestroot.in_root_argv(
        root, [cc, "-O2", "-Wall", f"-I{build}", f"{project}/harness/guest/read_latency.c",
               "-o", f"{build}/read-latency"],
        {build: directory, project: PROJECT_ROOT})


def _cffi_argv(kernel: Kernel, root: Path, directory: Path) -> list[str]:
    cc = kernel_compiler(kernel)
    build, project = protocol.GUEST_BUILD, protocol.GUEST_PROJECT
    return guestroot.in_root_argv(
        root, ["env", f"CC={cc}", "python3", f"{project}/harness/guest/uapi_build.py",
               "--header", f"{build}/test_hmm_uapi.h", "--outdir", build],
        {build: directory, project: PROJECT_ROOT})


def precompile_argv(root: Path, build_dir: Path, suites: tuple[str, ...]) -> list[str]:
    """Collect the suites once in the guest root, natively, so the guest finds the project's
    bytecode and pytest's rewritten test modules in __pycache__ (the project share is
    read-only to the guest, and compiling them under TCG costs seconds on every boot)."""
    build, project = protocol.GUEST_BUILD, protocol.GUEST_PROJECT
    return guestroot.in_root_argv(
        root, ["env", f"PYTHONPATH={project}:{build}", "python3", "-m", "pytest",
               "-p", "harness.guest.plugin", "-c", f"{project}/tests/guest/pytest.ini",
               "--rootdir", project, *protocol.PYTEST_PLUGIN_OPTIONS, "--hmm-no-load",
               "--hmm-events=/dev/null", "--collect-only", "-q",
               *[f"{project}/{suite}" for suite in suites]],
        {project: PROJECT_ROOT, build: build_dir}, cwd="/tmp")


def _announce_build(kernel: Kernel, root: Path, directory: Path, runner: CommandRunner,
                    extra_modules: tuple[Path, ...]) -> None:
    """What build_for_guest runs, for --dry-run: the same command builders, in its order."""
    runner.announce(f"# copy lib/test_hmm.c, lib/test_hmm_uapi.h and kmod/Makefile into "
                    f"{directory}")
    runner.announce(f"# if the headers' migrate.h declares {kmodext.EXPECTED_PROTOTYPE}: hook "
                    f"kmod/test_hmm_evict.c into them; say so in {directory}/{kmodext.RECORD_NAME}")
    runner.run(_make_module_argv(kernel, root, directory))
    for extra in extra_modules:
        runner.announce(f"# copy {extra} into {directory}/extra/{extra.name}")
        runner.run(_make_module_argv(kernel, root, directory, f"extra/{extra.name}"))
    runner.run(_cffi_argv(kernel, root, directory))
    runner.run(_selftest_argv(kernel, root, directory))
    runner.run(_read_latency_argv(kernel, root, directory))
    runner.announce(f"# write the initramfs (busybox and the 9p modules) to "
                    f"{directory}/initramfs.img")


def build_for_guest(kernel: Kernel, root: Path, cache_dir: Path, runner: CommandRunner,
                    prebuilt_module: Path | None = None,
                    extra_modules: tuple[Path, ...] = (),
                    test_hmm_source: TestHmmSource | None = None) -> GuestBuild:
    """Everything lands in one directory keyed by its inputs; extra module directories are
    built beside test_hmm and reach the guest as /hmm/build/extra/NAME/NAME.ko."""
    sources = module_sources(kernel, test_hmm_source)
    key = "<inputs-hash>" if runner.dry_run else _inputs_key(kernel, sources, extra_modules)
    directory = cache_dir / "builds" / kernel.release / key
    build = GuestBuild(directory=directory, module=directory / "test_hmm.ko",
                       uapi_header=directory / "test_hmm_uapi.h",
                       initramfs=directory / "initramfs.img")
    if runner.dry_run:
        _announce_build(kernel, root, directory, runner, extra_modules)
    elif not (directory / ".complete").exists():
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, path in sources.items():
            shutil.copyfile(path, staging / name)
        can_build = kernel.host_build is None or kernel.host_build.build_dir is not None
        if can_build:
            kmodext.apply_to_staging(staging, root if kernel.host_build is None else Path("/"),
                                     kernel.headers_in_root)
            runner.run(_make_module_argv(kernel, root, staging), what="building test_hmm.ko")
        for extra in extra_modules:
            target = staging / "extra" / extra.name
            shutil.copytree(extra, target)
            runner.run(_make_module_argv(kernel, root, staging, f"extra/{extra.name}"),
                       what=f"building the extra module {extra}")
        runner.run(_cffi_argv(kernel, root, staging),
                   what="building the cffi extension for test_hmm_uapi.h")
        runner.run(_selftest_argv(kernel, root, staging),
                   what="building the kernel's C selftest hmm-tests")
        runner.run(_read_latency_argv(kernel, root, staging),
                   what="building the C side of the read-latency benchmark")
        options = kconfig.parse(kernel.config.read_text())
        (staging / "initramfs.img").write_bytes(
            initramfs.build(root / "bin/busybox", kernel.modules_dir, options))
        (staging / ".complete").touch()
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    if prebuilt_module is not None:
        # A copy beside the rest, so the guest loads exactly the module that was checked.
        custom = directory.with_name(directory.name + "-custom")
        shutil.rmtree(custom, ignore_errors=True)
        shutil.copytree(directory, custom)
        shutil.copyfile(prebuilt_module, custom / "test_hmm.ko")
        build = GuestBuild(directory=custom, module=custom / "test_hmm.ko",
                           uapi_header=custom / "test_hmm_uapi.h",
                           initramfs=custom / "initramfs.img")
    if not runner.dry_run:
        verify_module(build.module, kernel)
    return build
