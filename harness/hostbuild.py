"""Kernels whose modules are built on the host: trees the harness built, or built trees and
build directories of the user's. Pure decisions: which compiler, which make command line.

Debian kernels are built with sid's gcc-16, so their modules are built chrooted in the guest
root; a tree built here was built with the host's compiler, so its modules are too. Userspace
for the guest (the cffi extension, hmm-tests, read-latency) is always built in the guest root
with the root's own compiler, whatever the kernel.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import guestroot, initramfs
from harness.errors import MissingToolError, ModuleMismatchError

CCACHE_SIZE = "8G"


@dataclass(frozen=True)
class HostBuild:
    # `make -C build_dir M=...` builds modules for the kernel; None: the kernel came without
    # a build directory, so only a prebuilt --module can be loaded.
    build_dir: Path | None
    # Leading `env NAME=value` words and make variables (CC=..., LLVM=1), as the kernel was
    # built, so a module gets the same compiler.
    env: tuple[str, ...] = ()
    make_args: tuple[str, ...] = ()
    # Changes whenever the kernel is rebuilt; keys the module build.
    identity: str = ""


def ccache_env(cache_dir: Path) -> tuple[str, ...]:
    """ccache keeps its objects beside the harness's other builds unless CCACHE_DIR says
    otherwise."""
    directory = os.environ.get("CCACHE_DIR") or str(cache_dir / "ccache")
    return (f"CCACHE_DIR={directory}", f"CCACHE_MAXSIZE={CCACHE_SIZE}")


def compiler_args(ccache: bool) -> tuple[str, ...]:
    """make variables for a tree the harness builds with the host's gcc."""
    if ccache:
        return ("CC=ccache gcc", "HOSTCC=ccache gcc")
    return ("CC=gcc",)


def module_compiler_args(options: dict[str, str], host_gcc_version: str | None,
                         ccache: bool, where: str) -> tuple[str, ...]:
    """make variables to build a module for a kernel built elsewhere: its own compiler, which
    must be the host's (the kernel's compiler flags and plugins must match the module's)."""
    if options.get("CONFIG_CC_IS_CLANG") == "y":
        return ("LLVM=1",)
    wanted = options.get("CONFIG_CC_VERSION_TEXT", "").strip()
    if wanted and host_gcc_version is not None and wanted != host_gcc_version.strip():
        raise ModuleMismatchError(
            f"{where} was built with '{wanted}' but the host's gcc is "
            f"'{host_gcc_version.strip()}': test_hmm would be built with other flags than the "
            "kernel", "build the kernel with the host's gcc, or give a test_hmm.ko built for it "
            "with --module")
    command = wanted.split()[0] if wanted else "gcc"
    return (f"CC=ccache {command}",) if ccache else (f"CC={command}",)


def module_make_argv(build: HostBuild, module_dir: Path) -> list[str]:
    if build.build_dir is None:
        raise MissingToolError("the kernel has no build directory to build modules against",
                               "give the prebuilt module with --module")
    env = ["env", *build.env] if build.env else []
    return [*env, "make", "-C", str(build.build_dir), f"M={module_dir}", *build.make_args,
            "modules"]


def guest_root_compiler(recipe_text: str | None = None) -> str:
    """The C compiler the guest root's recipe installs (gcc-16 for sid)."""
    text = recipe_text if recipe_text is not None else guestroot.PACKAGES_FILE.read_text()
    compilers = [p for p in guestroot.recipe_packages(text) if re.fullmatch(r"gcc-\d+", p)]
    return compilers[0] if compilers else "gcc"


def have_ccache() -> bool:
    return shutil.which("ccache") is not None


def first_line(text: str) -> str:
    return text.splitlines()[0] if text.strip() else ""


def reference_module(modules_dir: Path) -> Path | None:
    """A module of the kernel's own build, whose vermagic is what the kernel accepts: the
    first one modules.order lists, else 9pnet (Debian's kernels have it as a module)."""
    order = modules_dir / "modules.order"
    names = order.read_text().split() if order.is_file() else []
    for name in names:
        stem = modules_dir / re.sub(r"\.(ko|o)$", "", name)
        for suffix in (".ko", ".ko.xz", ".ko.gz"):
            if stem.with_name(stem.name + suffix).is_file():
                return stem.with_name(stem.name + suffix)
    try:
        return initramfs.find_module(modules_dir, "9pnet")
    except FileNotFoundError:
        return None
