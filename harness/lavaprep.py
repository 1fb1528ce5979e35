"""`harness lava-job`: prepares a LAVA job's artefacts from the harness's cache and writes the job.

The output directory gets the four artefacts named in `harness.lavajob` (the kernel image,
the LAVA initramfs, the guest root as a squashfs image, test_hmm.ko), `job.yaml`, and
`local-device.yaml`, a device dictionary for trying the job with `lava-run` on this machine.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import guestbuild, initramfs, kconfig, kernels, kernelspec, lavajob, provision, run
from harness.commands import CommandRunner, require_tool
from harness.errors import KernelConfigError, ResultsDirError
from harness.paths import PROJECT_ROOT
from harness.progress import Progress

LAVA_INIT = PROJECT_ROOT / "vm-images" / "lava-init.sh"
# The project files the guest runs: the guest package with what it imports, and the suites.
PROJECT_FILES = ("harness/*.py", "harness/guest/*.py", "tests/__init__.py", "tests/guest/**/*")
# The guest build products the suites use; test_hmm.ko arrives separately, through LAVA.
BUILD_FILES = ("_hmm_uapi*.so", "test_hmm_uapi.h", "hmm-tests", "read-latency",
               "kmodext.json", "extra/**/*.ko")
ROOTFS_STAMP = ".rootfs.squashfs.source"


@dataclass(frozen=True)
class LavaJobRequest:
    run_options: run.RunOptions  # the kernel, selection and cache, as for `run`
    output_dir: Path
    artifact_url: str


def job_options(request: LavaJobRequest, release: str) -> lavajob.LavaJobOptions:
    options = request.run_options
    return lavajob.LavaJobOptions(
        artifact_url=request.artifact_url, release=release, mode=options.mode,
        keyword=options.keyword, suites=options.suites, test_timeout=options.test_timeout,
        run_timeout=options.run_timeout, cpus=options.cpus, memory_mib=options.memory_mib,
        kvm=options.accel != "tcg", extra_kernel_args=options.extra_kernel_args)


def validate(request: LavaJobRequest) -> None:
    """Everything that can be refused before a download or build."""
    lavajob.check_artifact_url(request.artifact_url)
    run.validate_request(request.run_options)


def _files(base: Path, patterns: tuple[str, ...]) -> list[Path]:
    found = {p for pattern in patterns for p in base.glob(pattern)
             if p.is_file() and "__pycache__" not in p.parts}
    return sorted(found)


def _directories(paths: list[str]) -> list[str]:
    """Every parent directory of the paths, parents first (the kernel's initramfs unpacker
    does not create them)."""
    parents = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return sorted(parents, key=lambda d: (d.count("/"), d))


def ramdisk_entries(busybox: Path, modules_dir: Path, options_set: dict[str, str],
                    build_dir: Path) -> list[initramfs.Entry]:
    modules = {name: initramfs.module_bytes(initramfs.find_module(modules_dir, name))
               for name in lavajob.ramdisk_modules(options_set)}
    items = initramfs.entries(busybox.read_bytes(), modules, LAVA_INIT.read_bytes())
    files: dict[str, tuple[Path, int]] = {}
    for path in _files(PROJECT_ROOT, PROJECT_FILES):
        files[f"hmm/project/{path.relative_to(PROJECT_ROOT)}"] = (path, 0o100644)
    for path in _files(build_dir, BUILD_FILES):
        mode = 0o100755 if path.stat().st_mode & 0o111 else 0o100644
        files[f"hmm/build/{path.relative_to(build_dir)}"] = (path, mode)
    have = {item.path for item in items}
    directories = [d for d in _directories([*files, "hmm/build/x"]) if d not in have]
    items += [initramfs.Entry(d, 0o40755) for d in directories]
    items += [initramfs.Entry(name, mode, path.read_bytes())
              for name, (path, mode) in files.items()]
    return items


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _rootfs(root: Path, target: Path, runner: CommandRunner, progress: Progress) -> None:
    """The guest root as a squashfs image; kept while the root it came from is unchanged."""
    source = f"{root} {root.stat().st_mtime_ns}\n"
    stamp = target.with_name(ROOTFS_STAMP)
    if target.exists() and stamp.exists() and stamp.read_text() == source:
        progress.say(f"{target.name}: unchanged guest root, kept")
        return
    mksquashfs = require_tool("mksquashfs", "squashfs-tools")
    target.unlink(missing_ok=True)
    runner.run([mksquashfs, root, target, "-comp", "zstd", "-noappend", "-quiet",
                "-no-progress", "-wildcards", "-e", "proc/*", "sys/*", "dev/*", "tmp/*"],
               what="packing the guest root into a squashfs image")
    if not runner.dry_run:
        stamp.write_text(source)


def prepare(request: LavaJobRequest, runner: CommandRunner,
            progress: Progress) -> dict[str, object]:
    """Build or find the kernel, guest root and test_hmm, write the artefacts and the job.
    Returns the job."""
    options = request.run_options
    validate(request)
    out = request.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsDirError(f"cannot create the output directory {out}: {error.strerror}",
                              "pass --output with a directory you can write") from error
    kernel_request = run.kernel_request(options)
    built = kernels.build_tree(kernel_request, runner)
    with provision.cache_lock(options.cache_dir):
        provisioned = kernels.resolve(kernel_request, runner, built)
        kernel = provisioned.kernel
        options_set = kconfig.parse(kernel.config.read_text()) if not runner.dry_run else {}
        if not runner.dry_run:
            kconfig.require(options_set, kernel.origin)
            if problems := lavajob.kernel_problems(options_set):
                raise KernelConfigError(
                    f"{kernel.origin} cannot boot the LAVA job's guest: " + "; ".join(problems),
                    "use a kernel with these options (Debian's kernels have them), or add them "
                    "to the tree's config")
        build = guestbuild.build_for_guest(
            kernel, provisioned.root, options.cache_dir, runner, options.module,
            options.extra_kmods, kernelspec.test_hmm_source(options.test_hmm_source)
            if options.test_hmm_source else None)
        _rootfs(provisioned.root, out / lavajob.ROOTFS, runner, progress)
    job_settings = job_options(request, kernel.release)
    job = lavajob.build_job(job_settings)
    if runner.dry_run:
        runner.announce(f"# write {', '.join(lavajob.ARTIFACTS)} and job.yaml to {out}")
        return job
    shutil.copyfile(kernel.image, out / lavajob.KERNEL)
    shutil.copyfile(build.module, out / lavajob.MODULE)
    ramdisk = initramfs.newc_archive(ramdisk_entries(
        provisioned.root / "bin/busybox", kernel.modules_dir, options_set, build.directory))
    (out / lavajob.RAMDISK).write_bytes(gzip.compress(ramdisk, compresslevel=6))
    sums = {name: _sha256(out / name) for name in lavajob.ARTIFACTS}
    job = lavajob.build_job(job_settings, sums)
    (out / "job.yaml").write_text(lavajob.to_yaml(job))
    (out / "local-device.yaml").write_text(lavajob.to_yaml(lavajob.local_device_for(
        job, kvm=False)))
    progress.say(f"kernel: {kernel.origin}")
    return job
