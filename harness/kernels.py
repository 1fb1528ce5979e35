"""Acts: turns any `--kernel` spec into a bootable Kernel and the guest root to boot it with.

Debian kernels come with their own guest root (harness.provision). Every other kernel boots
with the default Debian kernel's guest root, which holds python3, pytest and cffi and is the
build root of the guest's userspace; its test_hmm is built on the host against the kernel's
build directory, or loaded from --module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from harness import (
    debian,
    fragment,
    hostbuild,
    ikconfig,
    initramfs,
    kconfig,
    kernelspec,
    modinfo,
    provision,
    treebuild,
)
from harness.commands import CommandRunner
from harness.errors import KernelConfigError, KernelNotFoundError, UsageError
from harness.provision import Kernel, Provisioned


@dataclass(frozen=True)
class KernelRequest:
    spec: kernelspec.KernelSpec
    cache_dir: Path
    mirror: str
    debug: bool = False  # --debug: add vm-images/kconfig/debug.config (source trees only)
    module: Path | None = None  # --module


def check(request: KernelRequest) -> None:
    """What can be refused before anything is downloaded or built."""
    spec = request.spec
    if request.debug and not isinstance(spec, kernelspec.SourceTree):
        raise UsageError("--debug configures a kernel tree the harness builds, but the kernel "
                         f"is {describe(spec)}, which is built already",
                         "give --kernel a kernel source tree, or drop --debug")
    if isinstance(spec, kernelspec.KernelImage) and spec.modules_dir is None \
            and request.module is None:
        raise UsageError(f"--kernel {spec.image} is a bzImage alone: the harness cannot build "
                         "test_hmm for it", "add --module path/to/test_hmm.ko (built for this "
                         "kernel), or --modules-dir DIR with the kernel's modules, config and "
                         "build link (make modules_install)")
    if isinstance(spec, kernelspec.KernelImage) and spec.modules_dir is not None \
            and not spec.modules_dir.is_dir():
        raise UsageError(f"--modules-dir {spec.modules_dir} is not a directory",
                         "give the kernel's lib/modules/RELEASE directory")


def describe(spec: kernelspec.KernelSpec) -> str:
    if isinstance(spec, kernelspec.DebianKernel):
        return f"the Debian kernel {spec.spec.describe()}"
    if isinstance(spec, kernelspec.SourceTree):
        return f"the kernel source tree {spec.tree}"
    if isinstance(spec, kernelspec.BuiltTree):
        return f"the built tree {spec.build_dir}"
    if isinstance(spec, kernelspec.ModulesDir):
        return f"the kernel directory {spec.directory}"
    return f"the kernel image {spec.image}"


def fragments(debug: bool) -> list[Path]:
    return [fragment.BASE, *([fragment.DEBUG] if debug else [])]


def build_tree(request: KernelRequest, runner: CommandRunner) -> Kernel | None:
    """Configure and build a kernel source tree (None for every other kind of kernel)."""
    if not isinstance(request.spec, kernelspec.SourceTree):
        return None
    return _build_source_tree(request.spec, request, runner)


def _build_source_tree(spec: kernelspec.SourceTree, request: KernelRequest,
                       runner: CommandRunner) -> Kernel:
    with treebuild.tree_lock(request.cache_dir, spec.tree):
        return treebuild.build(spec.tree, request.cache_dir, fragments(request.debug), runner)


def resolve(request: KernelRequest, runner: CommandRunner,
            built: Kernel | None = None) -> Provisioned:
    """The kernel and its guest root; `built` is build_tree()'s result for a source tree."""
    spec = request.spec
    if isinstance(spec, kernelspec.DebianKernel):
        return provision.provision_debian(spec.spec, request.cache_dir, request.mirror, runner)
    base = provision.provision_debian(debian.DEFAULT_KERNEL, request.cache_dir, request.mirror,
                                      runner)
    if isinstance(spec, kernelspec.SourceTree):
        kernel = built or _build_source_tree(spec, request, runner)
    elif isinstance(spec, kernelspec.BuiltTree):
        kernel = from_built_tree(spec, request.cache_dir, runner)
    elif isinstance(spec, kernelspec.ModulesDir):
        kernel = from_modules_dir(spec, base.kernel, request.cache_dir, runner)
    else:
        kernel = from_image(spec, base.kernel, request.cache_dir, runner)
    if not runner.dry_run:
        options = kconfig.parse(kernel.config.read_text())
        kconfig.require(options, kernel.origin, kconfig.GUEST_REQUIRED)
        if isinstance(spec, kernelspec.SourceTree | kernelspec.BuiltTree) \
                and options.get("CONFIG_TEST_HMM") == "y":
            raise KernelConfigError(
                f"{kernel.origin} has CONFIG_TEST_HMM=y: a built-in test_hmm would clash with "
                "the module the harness loads", "configure the tree with CONFIG_TEST_HMM=m or n")
    return Provisioned(kernel=kernel, root=base.root)


def _host_gcc(runner: CommandRunner) -> str | None:
    if runner.dry_run:
        return None
    return hostbuild.first_line(runner.run(["gcc", "--version"], capture=True,
                                           what="asking the host's gcc its version"))


def _module_build(build_dir: Path, options: dict[str, str], cache_dir: Path, where: str,
                  identity: str, runner: CommandRunner) -> hostbuild.HostBuild:
    ccache = hostbuild.have_ccache()
    args = hostbuild.module_compiler_args(options, _host_gcc(runner), ccache, where)
    return hostbuild.HostBuild(build_dir, hostbuild.ccache_env(cache_dir) if ccache else (),
                               args, identity)


def _identity(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _release(build_dir: Path, image: Path) -> str:
    recorded = build_dir / "include/config/kernel.release"
    if recorded.is_file():
        return recorded.read_text().strip()
    return modinfo.bzimage_release(image.read_bytes())


def from_built_tree(spec: kernelspec.BuiltTree, cache_dir: Path,
                    runner: CommandRunner) -> Kernel:
    """A tree the user built (in place or with O=): its bzImage and .config as they are."""
    out = spec.build_dir.resolve()
    image, config = out / kernelspec.BZIMAGE, out / ".config"
    if not (out / "Module.symvers").is_file():
        raise KernelNotFoundError(f"{out} has a bzImage but no Module.symvers: modules cannot "
                                  "be built against it",
                                  f"run 'make -C {out} modules' (or the full build) first")
    options = kconfig.parse(config.read_text())
    identity = _identity(image, out / "Module.symvers")
    origin = f"built tree {out}"
    runner.announce(f"# using {image} and {config} as they are (the harness does not rebuild a "
                    "tree it did not configure)")
    return Kernel(release=_release(out, image), image=image, config=config, modules_dir=out,
                  source_dir=spec.source_dir.resolve(), headers_in_root=str(out),
                  origin=origin,
                  host_build=_module_build(out, options, cache_dir, origin, identity, runner))


def from_modules_dir(spec: kernelspec.ModulesDir, default: Kernel, cache_dir: Path,
                     runner: CommandRunner) -> Kernel:
    """A directory like /usr/lib/modules/RELEASE. With a `build` link (make modules_install
    makes one) test_hmm is built on the host against it; without, in the guest root against
    /usr/src/linux-headers-RELEASE, as for a Debian kernel."""
    directory = spec.directory.resolve()
    release = directory.name
    image, config = directory / "vmlinuz", directory / "config"
    kernel = Kernel(release=release, image=image, config=config, modules_dir=directory,
                    source_dir=default.source_dir,
                    headers_in_root=f"/usr/src/linux-headers-{release}",
                    origin=f"kernel directory {directory}")
    build = directory / "build"
    if (build / "Module.symvers").is_file():
        options = kconfig.parse(config.read_text())
        host = _module_build(build.resolve(), options, cache_dir, kernel.origin,
                             _identity(image, build / "Module.symvers"), runner)
        source = build / "source" if (build / "source").exists() else build
        kernel = replace(kernel, host_build=host, headers_in_root=str(build.resolve()),
                         source_dir=_source_or(source.resolve(), default.source_dir))
    return kernel


def _source_or(tree: Path, fallback: Path) -> Path:
    """The C selftest comes from the kernel's own tree when it has one."""
    return tree if (tree / "tools/testing/selftests/mm/hmm-tests.c").is_file() else fallback


CONFIG_NAMES = ("config", ".config", "build/.config")


def image_config(spec: kernelspec.KernelImage, cache_dir: Path) -> tuple[Path, str]:
    """The config of a bare bzImage: from --modules-dir, else the image's own (IKCONFIG),
    written into the cache; and where it came from."""
    if spec.modules_dir is not None:
        for name in CONFIG_NAMES:
            if (spec.modules_dir / name).is_file():
                return spec.modules_dir / name, f"{spec.modules_dir / name}"
    data = spec.image.read_bytes()
    try:
        text = ikconfig.config_text(data)
    except ikconfig.NoEmbeddedConfig as error:
        looked = (f"{spec.modules_dir} has none of {', '.join(CONFIG_NAMES)} and "
                  if spec.modules_dir else "no --modules-dir was given and ")
        raise KernelConfigError(
            f"no config for {spec.image}: {looked}the image does not carry one: {error}",
            "give --modules-dir with the kernel's config (or build the kernel with "
            "CONFIG_IKCONFIG=y); the harness must check the kernel has what test_hmm needs"
        ) from error
    saved = cache_dir / "images" / hashlib.sha256(data).hexdigest()[:16] / "config"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(text)
    return saved, "its own IKCONFIG"


def from_image(spec: kernelspec.KernelImage, default: Kernel, cache_dir: Path,
               runner: CommandRunner) -> Kernel:
    image = spec.image.resolve()
    release = modinfo.bzimage_release(image.read_bytes())
    config, config_origin = image_config(spec, cache_dir)
    runner.announce(f"# {image}: release {release}, config from {config_origin}")
    modules_dir = spec.modules_dir.resolve() if spec.modules_dir else image.parent
    options = kconfig.parse(config.read_text())
    modular = initramfs.modules_to_load(options)
    if modular and spec.modules_dir is None:
        raise KernelConfigError(f"{image} has 9p as modules ({', '.join(modular)}), and no "
                                "--modules-dir says where they are",
                                "add --modules-dir with the kernel's modules, or build 9p in "
                                "(CONFIG_NET_9P=y, CONFIG_NET_9P_VIRTIO=y, CONFIG_9P_FS=y)")
    build = modules_dir / "build" if spec.modules_dir else None
    origin = f"kernel image {image} (config: {config_origin})"
    if build is not None and (build / "Module.symvers").is_file():
        host = _module_build(build.resolve(), options, cache_dir, origin,
                             _identity(image, build / "Module.symvers"), runner)
        source = build / "source" if (build / "source").exists() else build
        source_dir = _source_or(source.resolve(), default.source_dir)
    else:
        runner.announce(f"# no build directory for {image}: only --module can be loaded")
        host = hostbuild.HostBuild(None, identity=_identity(image))
        source_dir = default.source_dir
    return Kernel(release=release, image=image, config=config, modules_dir=modules_dir,
                  source_dir=source_dir, headers_in_root=str(build or modules_dir),
                  origin=origin, host_build=host)
