"""Acts: configures and builds a kernel source tree out of tree, with ccache, incrementally.

The build directory is `CACHE/trees/NAME-HASH/build` (keyed by the tree's path;
`build-debug` with --debug), so the user's tree stays clean and a second run rebuilds only
what changed. The config is `make allnoconfig` with the project's fragments as
KCONFIG_ALLCONFIG; later runs with the same fragments only `make olddefconfig` (the tree's
Kconfig may have changed, as it does in a bisection). Every fragment option is then
checked, and one that did not survive is named with the Kconfig dependency that dropped it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import fragment, hostbuild, kconfig, kconfigdeps, kernelspec
from harness.commands import CommandRunner, require_tool
from harness.errors import MissingToolError
from harness.provision import Kernel

BUILD_TOOLS = {"make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc",
               "perl": "perl"}
# objtool (x86-64) needs libelf's headers.
LIBELF_HEADER = Path("/usr/include/gelf.h")
TARGETS = ("bzImage", "modules")
# With KASAN, lockdep and DEBUG_PAGEALLOC under TCG, ACPI's interpreter runs QEMU's PCI
# interrupt routing method (_PRT) past ACPICA's 30 s loop timeout for every device, and the
# guest never comes up; the BIOS's routing table does the same job at once.
DEBUG_BOOT_ARGS = ("acpi=noirq",)


def build_dir(cache_dir: Path, tree: Path, fragments: list[Path]) -> Path:
    """`build` for the base fragment, `build-debug` with debug.config and so on: switching
    --debug on and off does not rebuild the tree each time."""
    extra = [p.stem for p in fragments[1:]]
    return cache_dir / "trees" / kernelspec.path_key(tree) / "-".join(["build", *extra])


@contextmanager
def tree_lock(cache_dir: Path, tree: Path) -> Iterator[None]:
    """One build at a time in a tree's build directory; other harness runs go on."""
    home = cache_dir / "trees" / kernelspec.path_key(tree)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def jobs() -> int:
    return (os.cpu_count() or 1) + 1


def _require_tools() -> None:
    for tool, package in BUILD_TOOLS.items():
        require_tool(tool, package)
    if not LIBELF_HEADER.exists():
        raise MissingToolError("libelf's headers are not installed (objtool needs gelf.h)",
                               "apt-get install libelf-dev, or run ci/bootstrap")


def make_argv(tree: Path, out: Path, compiler: tuple[str, ...], env: tuple[str, ...],
              *targets: str, extra: tuple[str, ...] = ()) -> list[str]:
    prefix = ["env", *env] if env else []
    return [*prefix, "make", "-C", str(tree), f"O={out}", f"-j{jobs()}", *compiler, *extra,
            *targets]


@dataclass(frozen=True)
class _Make:
    tree: Path
    out: Path
    compiler: tuple[str, ...]
    env: tuple[str, ...]

    def argv(self, *targets: str, extra: tuple[str, ...] = ()) -> list[str]:
        return make_argv(self.tree, self.out, self.compiler, self.env, *targets, extra=extra)


def configure(make: _Make, fragments: list[Path], runner: CommandRunner) -> None:
    """A .config with every fragment option as asked, or KernelConfigError naming the ones
    the tree's Kconfig dropped and why.

    With the fragments unchanged since the last run, `olddefconfig` updates the existing
    config (seconds). An option that is missing after that is retried from scratch
    (allnoconfig plus the fragments): a bisection may have passed a commit that dropped it,
    and olddefconfig would keep it off for every commit after."""
    wanted = fragment.load(fragments)
    rendered = fragment.render(wanted)
    digest = hashlib.sha256(rendered.encode()).hexdigest()
    allconfig, stamp = make.out / "hmm-harness.fragment", make.out / "hmm-harness.fragment.sha256"
    if not runner.dry_run:
        make.out.mkdir(parents=True, exist_ok=True)
    current = (make.out / ".config").exists() and stamp.exists() \
        and stamp.read_text().strip() == digest
    if current:
        runner.run(make.argv("olddefconfig"), what=f"updating the config of {make.out}")
        if runner.dry_run or not fragment.check(wanted, _options(make.out)):
            return
    if not runner.dry_run:
        allconfig.write_text(rendered)
    runner.run(make.argv("allnoconfig", extra=(f"KCONFIG_ALLCONFIG={allconfig}",)),
               what=f"configuring {make.tree} (allnoconfig plus "
                    f"{', '.join(p.name for p in fragments)})")
    if runner.dry_run:
        return
    stamp.write_text(digest + "\n")
    options = _options(make.out)
    if fragment.check(wanted, options):
        runner.announce(f"# reading the Kconfig files of {make.tree} to explain the dropped "
                        "options")
        fragment.require(wanted, options, f"the tree {make.tree}", kconfigdeps.load(make.tree))


def _options(out: Path) -> dict[str, str]:
    return kconfig.parse((out / ".config").read_text())


def build(tree: Path, cache_dir: Path, fragments: list[Path], runner: CommandRunner) -> Kernel:
    """Configure, check and build `tree`; the Kernel the harness boots."""
    tree = tree.resolve()
    _require_tools()
    ccache = hostbuild.have_ccache()
    if not ccache:
        runner.announce("# ccache is not installed (apt-get install ccache): every build "
                        "starts cold")
    make = _Make(tree, build_dir(cache_dir, tree, fragments), hostbuild.compiler_args(ccache),
                 hostbuild.ccache_env(cache_dir) if ccache else ())
    configure(make, fragments, runner)
    runner.run(make.argv(*TARGETS), what=f"building {tree} in {make.out}",
               fix=f"read the compiler's output above; the build directory is {make.out}")
    out = make.out
    if runner.dry_run:
        release, identity = "<release>", "<identity>"
    else:
        release = (out / "include/config/kernel.release").read_text().strip()
        identity = _identity(out)
    return Kernel(release=release, image=out / kernelspec.BZIMAGE, config=out / ".config",
                  modules_dir=out, source_dir=tree, headers_in_root=str(out),
                  origin=f"kernel tree {tree} (built in {out})",
                  host_build=hostbuild.HostBuild(out, make.env, make.compiler, identity),
                  boot_args=DEBUG_BOOT_ARGS if fragment.DEBUG in fragments else ())


def _identity(out: Path) -> str:
    digest = hashlib.sha256((out / kernelspec.BZIMAGE).read_bytes())
    symvers = out / "Module.symvers"
    if symvers.exists():
        digest.update(symvers.read_bytes())
    return digest.hexdigest()[:16]
