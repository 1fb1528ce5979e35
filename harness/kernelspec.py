"""What a `--kernel SPEC` names, decided from the text and what exists at the path.

- a Debian suite or release (`sid`, `experimental`, `7.2.13+deb14-amd64`, `sid:RELEASE`);
- a kernel source tree (git checkout or unpacked tarball): the harness configures and builds
  it out of tree;
- a built tree, in place or an O= directory: its arch/x86/boot/bzImage and .config;
- a directory laid out like /usr/lib/modules/RELEASE: vmlinuz, config, the modules;
- a bzImage file, with `--modules-dir DIR` (modules and config) or `--module test_hmm.ko`.

`probe()` looks at the file system (stat calls and a 1 KiB read); `classify()` decides.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from harness import debian
from harness.errors import KernelNotFoundError, UsageError

BZIMAGE = "arch/x86/boot/bzImage"
TREE_MARKERS = ("Makefile", "Kconfig", "arch/x86/Kconfig")


@dataclass(frozen=True)
class DebianKernel:
    spec: debian.DebianKernelSpec


@dataclass(frozen=True)
class SourceTree:
    tree: Path


@dataclass(frozen=True)
class BuiltTree:
    build_dir: Path  # holds .config and arch/x86/boot/bzImage
    source_dir: Path  # the same directory for an in-place build; O='s `source` link otherwise


@dataclass(frozen=True)
class ModulesDir:
    """Like /usr/lib/modules/RELEASE of a Debian kernel package."""

    directory: Path


@dataclass(frozen=True)
class KernelImage:
    image: Path
    modules_dir: Path | None


KernelSpec = DebianKernel | SourceTree | BuiltTree | ModulesDir | KernelImage


@dataclass(frozen=True)
class PathFacts:
    """What classify() needs to know about a path."""

    path: Path
    exists: bool
    is_file: bool = False
    is_bzimage: bool = False  # a file with the bzImage setup header
    present: frozenset[str] = frozenset()  # which of INTERESTING exist under a directory
    source_link: Path | None = None  # an O= directory's `source`, resolved


INTERESTING = ("Makefile", "Kconfig", "arch/x86/Kconfig", ".config", BZIMAGE, "vmlinuz",
               "config", "source", "lib/test_hmm.c", "Module.symvers")


def is_path_spec(text: str) -> bool:
    return os.sep in text or text.startswith(".")


def probe(path: Path) -> PathFacts:
    if not path.exists():
        return PathFacts(path, exists=False)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(0x210)
        return PathFacts(path, exists=True, is_file=True, is_bzimage=head[0x202:0x206] == b"HdrS")
    present = frozenset(name for name in INTERESTING if (path / name).exists())
    source = (path / "source").resolve() if "source" in present else None
    return PathFacts(path, exists=True, present=present, source_link=source)


ACCEPTED = ("a kernel source tree, a built tree or O= directory (with arch/x86/boot/bzImage "
            "and .config), a directory like /usr/lib/modules/RELEASE (vmlinuz, config), a "
            "bzImage file (with --modules-dir DIR or --module test_hmm.ko), or a Debian suite "
            "or release such as sid, experimental or " + debian.PINNED_RELEASE)


def classify(text: str, facts: PathFacts | None, modules_dir: Path | None = None) -> KernelSpec:
    """The kind of kernel `text` names. `facts` is probe(Path(text)) for path specs."""
    if facts is None:
        if modules_dir is not None:
            raise UsageError(f"--modules-dir goes with a bzImage, not with --kernel {text}",
                             "give --kernel path/to/bzImage --modules-dir DIR, or drop "
                             "--modules-dir")
        return DebianKernel(debian.parse_debian_spec(text))
    path = facts.path
    if not facts.exists:
        raise KernelNotFoundError(f"--kernel {text} does not exist", f"give {ACCEPTED}")
    if modules_dir is not None and not facts.is_file:
        raise UsageError(f"--modules-dir goes with a bzImage file, but --kernel {text} is a "
                         "directory", "drop --modules-dir: a tree or modules directory brings "
                         "its own modules")
    if facts.is_file:
        if not facts.is_bzimage:
            raise KernelNotFoundError(f"--kernel {text} is a file but not a bzImage (no 'HdrS' "
                                      "setup header)",
                                      "give arch/x86/boot/bzImage of a built kernel, or "
                                      f"{ACCEPTED}")
        return KernelImage(path, modules_dir)
    present = facts.present
    if "vmlinuz" in present and "config" in present:
        return ModulesDir(path)
    if BZIMAGE in present and ".config" in present:
        source = facts.source_link or path
        return BuiltTree(path, source)
    is_tree = all(marker in present for marker in TREE_MARKERS)
    if is_tree and ".config" in present:
        raise UsageError(
            f"--kernel {text} is a kernel tree configured in place (.config) but not built "
            f"({BZIMAGE} is missing)",
            f"build it ('make -C {path}'), or clean it ('make -C {path} mrproper') so the "
            "harness configures and builds it out of tree")
    if is_tree:
        return SourceTree(path)
    if ".config" in present:
        raise UsageError(f"--kernel {text} has a .config but no {BZIMAGE}: an O= directory "
                         "not built yet?", f"build it (make -C {path}), then rerun")
    raise KernelNotFoundError(f"--kernel {text}: {path} is none of the kernels the harness "
                              "takes", f"give {ACCEPTED}")


def spec_from_text(text: str, modules_dir: Path | None = None) -> KernelSpec:
    facts = probe(Path(text)) if is_path_spec(text) else None
    return classify(text, facts, modules_dir)


def label(spec: KernelSpec) -> str:
    """A short name for tables and directory names."""
    if isinstance(spec, DebianKernel):
        return (f"{spec.spec.suite}" + (f"-{spec.spec.release}" if spec.spec.release else ""))
    if isinstance(spec, SourceTree):
        return spec.tree.resolve().name
    if isinstance(spec, BuiltTree):
        return spec.build_dir.resolve().name
    if isinstance(spec, ModulesDir):
        return spec.directory.resolve().name
    return spec.image.resolve().parent.name + "-" + spec.image.name


def path_key(path: Path) -> str:
    """A cache directory name for a tree, stable for its path."""
    resolved = path.resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------------------------------
# --test-hmm-source


@dataclass(frozen=True)
class TestHmmSource:
    __test__ = False
    test_hmm_c: Path
    uapi_h: Path | None  # None: the kernel's own lib/test_hmm_uapi.h


def test_hmm_source(path: Path) -> TestHmmSource:
    """--test-hmm-source: a test_hmm.c, or a directory holding it (or a tree with lib/)."""
    if path.is_file():
        if path.suffix != ".c":
            raise UsageError(f"--test-hmm-source {path} is not a .c file",
                             "give test_hmm.c, or the directory holding test_hmm.c and "
                             "test_hmm_uapi.h")
        uapi = path.with_name("test_hmm_uapi.h")
        return TestHmmSource(path, uapi if uapi.is_file() else None)
    for directory in (path, path / "lib"):
        if (directory / "test_hmm.c").is_file():
            uapi = directory / "test_hmm_uapi.h"
            return TestHmmSource(directory / "test_hmm.c", uapi if uapi.is_file() else None)
    raise UsageError(f"--test-hmm-source {path}: no test_hmm.c there (nor in its lib/)",
                     "give test_hmm.c, or the directory holding test_hmm.c and "
                     "test_hmm_uapi.h")
